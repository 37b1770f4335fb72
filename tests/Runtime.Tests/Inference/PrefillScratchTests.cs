using OnDeviceLlm.Runtime.Inference;
using OnDeviceLlm.Runtime.Tests.Fixtures;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Inference;

/// <summary>Prompt-sized activation buffers are lent per prefill, not kept by every session.</summary>
public sealed class PrefillScratchTests
{
    [Fact]
    public void SessionsBorrowOnePrefillBufferAndKeepOnlyDecodeSizedOnes()
    {
        var r = FixtureReference.Load("llama");
        using var model = LanguageModel.Load(r.Folder);
        var ids = r.FullSequenceIds;
        using var first = model.CreateSession();
        using var second = model.CreateSession();

        float[] a = first.Prefill(ids).ToArray();
        float[] b = second.Prefill(ids).ToArray();
        Assert.Equal(a, b);
        // Sequential prefills shared one buffer set, and neither session grew its own to the prompt's rows.
        Assert.Equal(1, model.Transformer.PooledPrefillScratches);
        Assert.Equal(0, ((CpuForwardPass)first.Pass).DecodeScratchRows);

        first.Decode(ids[0]);
        Assert.Equal(1, ((CpuForwardPass)first.Pass).DecodeScratchRows);
        Assert.Equal(1, model.Transformer.PooledPrefillScratches);
    }

    [Fact]
    public void ConcurrentPrefillsEachGetTheirOwnBuffersAndTheSameLogits()
    {
        var r = FixtureReference.Load("llama");
        using var model = LanguageModel.Load(r.Folder);
        var ids = r.FullSequenceIds;
        float[] expected;
        using (var alone = model.CreateSession()) expected = alone.Prefill(ids).ToArray();

        var results = Enumerable.Range(0, 4).AsParallel().WithDegreeOfParallelism(4).Select(_ =>
        {
            using var session = model.CreateSession();
            var logits = session.Prefill(ids).ToArray();
            session.Decode(ids[0]);
            return logits;
        }).ToArray();

        Assert.All(results, logits => Assert.Equal(expected, logits));
        Assert.InRange(model.Transformer.PooledPrefillScratches, 1, 4);
    }
}

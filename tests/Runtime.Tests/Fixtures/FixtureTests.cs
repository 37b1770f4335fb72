using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Conversion;
using OnDeviceLlm.Runtime.Inference;
using OnDeviceLlm.Runtime.Quantization;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Fixtures;

/// <summary>
/// Every fixture model against Hugging Face transformers' own numbers: logits within 1e-4, every argmax,
/// the 16-token greedy continuation — straight from the HF folder (both kernel backends) and through a .odlm file.
/// These pin the f32 KV cache: transformers computed in f32, and Auto gives bf16 models (gemma-bf16) an f16 cache,
/// which KvCacheTests judges by agreement instead.
/// </summary>
public class FixtureTests
{
    private const float Tolerance = 1e-4f;

    /// <summary>
    /// Where batched and one-token matmuls sum in different orders (the bf16 panels of gemma-bf16), a cached key can
    /// round to the neighbouring f16 value in one of the two runs. Measured on the public fixtures with an f16 cache:
    /// at most 1.4e-5 (gemma-bf16); the f32-weight fixtures give identical logits.
    /// </summary>
    internal const float F16CacheBatchingTolerance = 2e-4f;

    public static IEnumerable<object[]> Cases() => FixtureReference.Cases();

    [Theory, MemberData(nameof(Cases))]
    public void HuggingFaceFolder_ManagedKernels_MatchesTransformers(string fixture)
    {
        var r = FixtureReference.Load(fixture);
        using var model = LanguageModel.Load(r.Folder, new LoadOptions { Backend = KernelBackend.Managed, KvCacheType = KvCacheType.F32 });
        Assert.IsType<ManagedKernels>(model.Kernels);
        AssertMatchesReference(model, r);
    }

    [Theory, MemberData(nameof(Cases))]
    public void HuggingFaceFolder_NativeKernels_MatchesTransformers(string fixture)
    {
        var r = FixtureReference.Load(fixture);
        using var model = LanguageModel.Load(r.Folder, new LoadOptions { Backend = KernelBackend.Native, KvCacheType = KvCacheType.F32 });
        Assert.IsType<NativeKernels>(model.Kernels);
        AssertMatchesReference(model, r);
    }

    [Theory, MemberData(nameof(Cases))]
    public void ConvertedModelFile_MatchesTransformers(string fixture)
    {
        var r = FixtureReference.Load(fixture);
        string path = Path.Combine(Path.GetTempPath(), $"fixture-{fixture}-{Guid.NewGuid():N}.odlm");
        try
        {
            ModelConverter.Convert(r.Folder, path, QuantizationScheme.Source);
            using var model = LanguageModel.Load(path, new LoadOptions { KvCacheType = KvCacheType.F32 });
            Assert.Equal(Path.GetFullPath(r.Folder), model.File.Provenance.Source);
            AssertMatchesReference(model, r);
        }
        finally { File.Delete(path); }
    }

    public static IEnumerable<object[]> CasesByCacheType() =>
        FixtureReference.Names().SelectMany(n => new[] { new object[] { n, KvCacheType.F32 }, new object[] { n, KvCacheType.F16 } });

    [Theory, MemberData(nameof(CasesByCacheType))]
    public void PrefillThenDecode_EqualsTokenByTokenDecode(string fixture, KvCacheType cacheType)
    {
        var r = FixtureReference.Load(fixture);
        using var model = LanguageModel.Load(r.Folder, new LoadOptions { KvCacheType = cacheType });
        var ids = r.FullSequenceIds;
        int split = r.InputIds.Length, vocab = model.Config.VocabSize;

        var batched = model.CreateSession();
        var expected = new float[ids.Length * vocab];
        batched.Evaluate(ids.AsSpan(0, split), expected.AsSpan(0, split * vocab));
        for (int i = split; i < ids.Length; i++) batched.Decode(ids[i]).CopyTo(expected.AsSpan(i * vocab, vocab));

        var single = model.CreateSession();
        for (int i = 0; i < ids.Length; i++)
        {
            var logits = single.Decode(ids[i]);
            AssertClose(expected.AsSpan(i * vocab, vocab), logits, cacheType == KvCacheType.F32 ? 1e-5f : F16CacheBatchingTolerance, $"position {i}");
        }
    }

    internal static void AssertMatchesReference(LanguageModel model, FixtureReference r)
    {
        int vocab = model.Config.VocabSize;

        // One forward pass over the prompt: every position's argmax, the middle and last logits.
        var session = model.CreateSession();
        var logits = new float[r.InputIds.Length * vocab];
        session.Evaluate(r.InputIds, logits);
        for (int p = 0; p < r.InputIds.Length; p++)
            Assert.True(r.ArgmaxPerPosition[p] == Sampler.ArgMax(logits.AsSpan(p * vocab, vocab)), $"argmax differs at position {p}");
        AssertClose(r.LogitsMid, logits.AsSpan(r.LogitsMidPosition * vocab, vocab), Tolerance, "logits_mid");
        AssertClose(r.LogitsLast, logits.AsSpan((r.InputIds.Length - 1) * vocab, vocab), Tolerance, "logits_last");

        // Greedy continuation through the KV cache.
        var generator = new Generator(model.CreateSession(), new GenerationOptions { MaxNewTokens = r.GreedyNewTokens.Length, IgnoreEos = true }, model.Special.Eos);
        Assert.Equal(r.GreedyNewTokens, generator.Generate(r.InputIds).ToArray());
        Assert.Equal(FinishReason.Length, generator.FinishReason);

        // The whole 40-token sequence in one pass: long positions and the sliding window.
        var full = model.CreateSession();
        var fullLogits = new float[r.FullSequenceIds.Length * vocab];
        full.Evaluate(r.FullSequenceIds, fullLogits);
        for (int p = 0; p < r.FullSequenceIds.Length; p++)
            Assert.True(r.FullSequenceArgmax[p] == Sampler.ArgMax(fullLogits.AsSpan(p * vocab, vocab)), $"full-sequence argmax differs at position {p}");
        AssertClose(r.FullSequenceLogitsLast, fullLogits.AsSpan((r.FullSequenceIds.Length - 1) * vocab, vocab), Tolerance, "full_sequence_logits_last");
    }

    internal static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        float worst = 0; int at = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            float diff = Math.Abs(expected[i] - actual[i]);
            if (!(diff <= worst)) { worst = diff; at = i; }
        }
        Assert.True(worst <= tolerance, $"{what}: max |diff| {worst:G3} at index {at} (expected {expected[Math.Max(at, 0)]}, got {actual[Math.Max(at, 0)]}) exceeds {tolerance:G3}");
    }
}

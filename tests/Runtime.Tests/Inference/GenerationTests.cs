using OnDeviceLlm.Runtime.Inference;
using OnDeviceLlm.Runtime.Tests.Fixtures;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Inference;

/// <summary>The generation loop and the session's input checks, on a fixture model.</summary>
public class GenerationTests : IClassFixture<GenerationTests.LlamaModel>
{
    public sealed class LlamaModel : IDisposable
    {
        public FixtureReference Reference { get; } = FixtureReference.Load("llama");
        public LanguageModel Model { get; }
        public LlamaModel() => Model = LanguageModel.Load(Reference.Folder);
        public void Dispose() => Model.Dispose();
    }

    private readonly LanguageModel _model;
    private readonly FixtureReference _r;

    public GenerationTests(LlamaModel fixture) { _model = fixture.Model; _r = fixture.Reference; }

    private int[] Generate(GenerationOptions options, IReadOnlyList<int>? prompt = null, int? context = null) =>
        new Generator(_model.CreateSession(context), options, _model.Special.Eos).Generate(prompt ?? _r.InputIds).ToArray();

    [Fact]
    public void PromptLongerThanContext_Throws()
    {
        var prompt = Enumerable.Repeat(5, _model.Config.ContextLength + 1).ToArray();
        var e = Assert.Throws<InferenceException>(() => Generate(new GenerationOptions(), prompt));
        Assert.Contains($"context holds {_model.Config.ContextLength}", e.Message);
    }

    [Theory]
    [InlineData(512)]
    [InlineData(-1)]
    public void TokenOutsideVocabulary_Throws(int id)
    {
        var session = _model.CreateSession();
        var e = Assert.Throws<InferenceException>(() => session.Prefill([1, 2, id]));
        Assert.Contains($"Token id {id}", e.Message);
        Assert.Equal(0, session.Position); // nothing was evaluated
    }

    [Fact]
    public void SameSeed_SameOutput_DifferentSeed_DifferentOutput()
    {
        GenerationOptions Options(int seed) => new() { MaxNewTokens = 24, IgnoreEos = true, Sampling = new SamplingOptions { Temperature = 1.5f, Seed = seed } };
        var a = Generate(Options(7));
        Assert.Equal(a, Generate(Options(7)));
        Assert.NotEqual(a, Generate(Options(8)));
        Assert.NotEqual(_r.GreedyNewTokens, a[..16]); // sampling really sampled
    }

    [Fact]
    public void StopToken_EndsGenerationAfterIt()
    {
        int stop = _r.GreedyNewTokens[5];
        int firstAt = Array.IndexOf(_r.GreedyNewTokens, stop);
        var generator = new Generator(_model.CreateSession(), new GenerationOptions { MaxNewTokens = 16, StopTokens = [stop] }, []);
        var tokens = generator.Generate(_r.InputIds).ToArray();
        Assert.Equal(_r.GreedyNewTokens[..(firstAt + 1)], tokens);
        Assert.Equal(FinishReason.Stop, generator.FinishReason);
    }

    [Fact]
    public void Eos_StopsUnlessIgnored()
    {
        int eos = _r.GreedyNewTokens[3];
        int firstAt = Array.IndexOf(_r.GreedyNewTokens, eos);
        var stopping = new Generator(_model.CreateSession(), new GenerationOptions { MaxNewTokens = 16 }, [eos]);
        Assert.Equal(_r.GreedyNewTokens[..(firstAt + 1)], stopping.Generate(_r.InputIds).ToArray());
        var ignoring = new Generator(_model.CreateSession(), new GenerationOptions { MaxNewTokens = 16, IgnoreEos = true }, [eos]);
        Assert.Equal(_r.GreedyNewTokens, ignoring.Generate(_r.InputIds).ToArray());
    }

    [Fact]
    public void FullContext_StopsWithContextFull()
    {
        int context = _r.InputIds.Length + 4;
        var generator = new Generator(_model.CreateSession(context), new GenerationOptions { MaxNewTokens = 16, IgnoreEos = true }, []);
        var tokens = generator.Generate(_r.InputIds).ToArray();
        // The prompt fills 24 positions; 4 more are decoded, and the token sampled from the last one is still returned.
        Assert.Equal(_r.GreedyNewTokens[..5], tokens);
        Assert.Equal(FinishReason.ContextFull, generator.FinishReason);
    }

    [Fact]
    public void Cancellation_StopsBetweenTokens()
    {
        using var cts = new CancellationTokenSource();
        var generator = new Generator(_model.CreateSession(), new GenerationOptions { MaxNewTokens = 16, IgnoreEos = true }, []);
        var seen = new List<int>();
        Assert.Throws<OperationCanceledException>(() =>
        {
            foreach (var t in generator.Generate(_r.InputIds, cts.Token)) { seen.Add(t); if (seen.Count == 3) cts.Cancel(); }
        });
        Assert.Equal(_r.GreedyNewTokens[..3], seen);
    }
}

/// <summary>Long prompts run through the forward pass in chunks; the chunk seams must not show in the logits.</summary>
public class ChunkedPrefillTests
{
    [Fact]
    public void PromptLongerThanOneChunk_EqualsTokenByTokenDecode()
    {
        using var model = LanguageModel.Load(Path.Combine(TestPaths.Models, "stories260K", "hf-derived"));
        int vocab = model.Config.VocabSize, n = CpuForwardPass.PrefillChunk + 45;
        var random = new Random(5);
        var ids = Enumerable.Range(0, n).Select(_ => random.Next(3, vocab)).ToArray();

        var batched = new float[n * vocab];
        model.CreateSession().Evaluate(ids, batched);

        var single = model.CreateSession();
        for (int i = 0; i < n; i++)
            FixtureTests.AssertClose(batched.AsSpan(i * vocab, vocab), single.Decode(ids[i]), 1e-4f, $"position {i}");

        var last = model.CreateSession().Prefill(ids).ToArray();
        FixtureTests.AssertClose(batched.AsSpan((n - 1) * vocab, vocab), last, 0f, "last logits of Prefill vs Evaluate");
    }
}

using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Inference;
using OnDeviceLlm.Runtime.Quantization;
using OnDeviceLlm.Runtime.Tests.Fixtures;
using OnDeviceLlm.Runtime.Tests.Gguf;
using Xunit;
using Xunit.Abstractions;

namespace OnDeviceLlm.Runtime.Tests.Inference;

/// <summary>
/// The f16 KV cache: attention over it on both kernel backends, what Auto picks, and how closely a model run over it
/// follows the same model over the f32 cache (top-1 and greedy agreement on the fixtures and on stories260K).
/// </summary>
public class KvCacheTests(ITestOutputHelper output)
{
    public static IEnumerable<object[]> AttentionCases() =>
        from type in new[] { KvCacheType.F32, KvCacheType.F16 }
        from shape in new[]
        {
            // queries, pos0, heads, KV heads, head dim, window, ALiBi, softcap
            new object[] { 1, 40, 4, 4, 64, 0, false, 0f },   // decode, MHA
            new object[] { 7, 0, 8, 2, 24, 0, false, 0f },    // prefill, GQA
            new object[] { 5, 13, 6, 1, 67, 0, false, 0f },   // prefill after a prefix, MQA, odd head size
            new object[] { 6, 11, 4, 4, 16, 0, true, 0f },    // ALiBi
            new object[] { 9, 20, 4, 2, 32, 8, false, 5f },   // Gemma 2: sliding window and softcap
        }
        select shape.Prepend(type).ToArray();

    [Theory, MemberData(nameof(AttentionCases))]
    public void NativeAttention_MatchesManaged(KvCacheType type, int queries, int pos0, int heads, int kvHeads, int headDim, int window, bool alibi, float softcap)
    {
        Assert.True(NativeKernels.TryCreate(3, out var native, out string? reason), reason);
        using var _ = native;
        var rng = new Random(queries * 1000 + headDim);
        int positions = pos0 + queries, kvLength = positions * kvHeads * headDim, qLength = queries * heads * headDim;
        float[] q = Random(rng, qLength), keys = Random(rng, kvLength), values = Random(rng, kvLength);
        var shape = new AttentionShape
        {
            Queries = queries, Position0 = pos0, Heads = heads, KvHeads = kvHeads, HeadDim = headDim,
            Scale = 1 / MathF.Sqrt(headDim), Softcap = softcap, Window = window,
            AlibiSlopes = alibi ? Enumerable.Range(1, heads).Select(h => -0.25f / h).ToArray() : null,
        };
        float[] expected = new float[qLength], actual = new float[qLength];
        if (type == KvCacheType.F16)
        {
            Half[] k16 = keys.Select(v => (Half)v).ToArray(), v16 = values.Select(v => (Half)v).ToArray();
            ManagedKernels.Instance.Attention(shape, q, k16, v16, expected);
            native.Attention(shape, q, k16, v16, actual);
        }
        else
        {
            ManagedKernels.Instance.Attention(shape, q, keys, values, expected);
            native.Attention(shape, q, keys, values, actual);
        }
        FixtureTests.AssertClose(expected, actual, 1e-5f, $"{type} attention");
    }

    [Fact]
    public void NativeAttention_RejectsACacheShorterThanThePositions()
    {
        Assert.True(NativeKernels.TryCreate(1, out var native, out string? reason), reason);
        using var _ = native;
        var shape = new AttentionShape { Queries = 2, Position0 = 3, Heads = 2, KvHeads = 1, HeadDim = 4, Scale = 0.5f };
        var e = Assert.Throws<ArgumentException>(() => native.Attention(shape, new float[16], new float[16], new float[20], new float[16]));
        Assert.Contains("4 positions but 5", e.Message);
        Assert.Throws<ArgumentException>(() => native.Attention(shape with { KvHeads = 3 }, new float[16], new float[60], new float[60], new float[16]));
    }

    [Fact]
    public void Auto_KeepsF32ForF32Models_AndPicksF16ForReducedPrecisionOnes()
    {
        using var f32 = LanguageModel.Load(FixtureReference.Load("llama").Folder);
        Assert.Equal(KvCacheType.F32, f32.KvCacheType);
        using var bf16 = LanguageModel.Load(FixtureReference.Load("gemma-bf16").Folder);
        Assert.Equal(KvCacheType.F16, bf16.KvCacheType);
        using var q8 = LanguageModel.Load(Stories260KTests.GgufPath, new LoadOptions { Quantization = QuantizationScheme.Parse("q8") });
        Assert.Equal(KvCacheType.F16, q8.KvCacheType);
        using var pinned = LanguageModel.Load(Stories260KTests.GgufPath, new LoadOptions { Quantization = QuantizationScheme.Parse("q8"), KvCacheType = KvCacheType.F32 });
        Assert.Equal(KvCacheType.F32, pinned.KvCacheType);
    }

    [Fact]
    public void F16Cache_RoundsOnStore_TakesHalfTheMemory_AndTruncates()
    {
        using var model = LanguageModel.Load(FixtureReference.Load("llama").Folder);
        var c = model.Config;
        int kvDim = c.NumKvHeads * c.HeadDim;
        var f16 = new KvCache(c.NumLayers, 8, kvDim, KvCacheType.F16);
        var f32 = new KvCache(c.NumLayers, 8, kvDim, KvCacheType.F32);
        Assert.Equal(f32.ByteLength, 2 * f16.ByteLength);
        Assert.Equal(f16.ByteLength, KvCache.ByteSize(c, 8, KvCacheType.F16));
        Assert.Equal((long)c.NumLayers * 8 * kvDim * 2 * 2, f16.ByteLength);

        float[] keys = Random(new Random(3), 2 * kvDim), values = Random(new Random(4), 2 * kvDim);
        f16.Store(1, 3, keys, values);
        for (int i = 0; i < keys.Length; i++)
        {
            Assert.Equal((Half)keys[i], f16.HalfKeys(1)[3 * kvDim + i]);
            Assert.Equal((Half)values[i], f16.HalfValues(1)[3 * kvDim + i]);
        }
        Assert.Throws<InvalidOperationException>(() => f16.Keys(0));
        Assert.Throws<InvalidOperationException>(() => f32.HalfKeys(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => f16.Store(0, 7, keys, values));
        Assert.Throws<ArgumentOutOfRangeException>(() => new KvCache(1, 8, kvDim, KvCacheType.Auto));
    }

    public static IEnumerable<object[]> FixtureCases() =>
        from name in FixtureReference.Names()
        from backend in new[] { KernelBackend.Managed, KernelBackend.Native }
        select new object[] { name, backend };

    /// <summary>
    /// Every position of the 40-token sequence and the 16-token greedy continuation over an f16 cache against the same
    /// model over an f32 cache. Measured on the public fixtures, the same on both backends: top-1 40/40 and greedy 16/16
    /// everywhere, max |Δ logits| from 6.3e-4 (falcon-40b) to 5.3e-3 (llama). The bounds leave one close call of top-1,
    /// half of the greedy tokens and 4× the logit difference as slack for other shapes.
    /// </summary>
    [Theory, MemberData(nameof(FixtureCases))]
    public void F16Cache_AgreesWithTheF32Cache(string fixture, KernelBackend backend)
    {
        var r = FixtureReference.Load(fixture);
        using var exact = LanguageModel.Load(r.Folder, new LoadOptions { Backend = backend, KvCacheType = KvCacheType.F32 });
        using var half = LanguageModel.Load(r.Folder, new LoadOptions { Backend = backend, KvCacheType = KvCacheType.F16 });
        int vocab = exact.Config.VocabSize, n = r.FullSequenceIds.Length;
        float[] a = new float[n * vocab], b = new float[n * vocab];
        exact.CreateSession().Evaluate(r.FullSequenceIds, a);
        half.CreateSession().Evaluate(r.FullSequenceIds, b);
        int agree = 0;
        float worst = 0;
        for (int p = 0; p < n; p++)
        {
            agree += Sampler.ArgMax(a.AsSpan(p * vocab, vocab)) == Sampler.ArgMax(b.AsSpan(p * vocab, vocab)) ? 1 : 0;
            for (int i = p * vocab; i < (p + 1) * vocab; i++) worst = Math.Max(worst, Math.Abs(a[i] - b[i]));
        }
        int[] greedyExact = Greedy(exact, r.InputIds, r.GreedyNewTokens.Length), greedyHalf = Greedy(half, r.InputIds, r.GreedyNewTokens.Length);
        int same = 0;
        while (same < greedyHalf.Length && greedyHalf[same] == greedyExact[same]) same++;
        output.WriteLine($"{fixture} {backend}: top-1 {agree}/{n}, greedy {same}/{greedyHalf.Length}, max |Δ logits| {worst:G3}");

        Assert.True(agree >= n - 1, $"top-1 agreement {agree}/{n}");
        Assert.True(same >= greedyExact.Length / 2, $"greedy agreement {same}/{greedyExact.Length}");
        Assert.True(worst <= 2e-2f, $"max |Δ logits| {worst}");
    }

    /// <summary>
    /// stories260K with an f16 cache: how many of the 256 published greedy tokens survive, with its f32 weights and
    /// re-quantized as in Stories260KQuantizedTests (whose f32-cache counts are f16 256, q8 185, q4 27 on both backends).
    /// Measured with the f16 cache: f32 and f16 weights 256 on both backends, q4 27 on both, q8 185 managed but 71 native.
    /// Greedy decoding of this tiny model is chaotic: one flipped near-tie
    /// changes every later token, so the counts move with the last ulp of attention (the native and managed kernels
    /// sum in other orders) and say nothing smooth about quality. The bounds are the measured counts, except q8's,
    /// which is the GGUF issue's bar of 50 tokens: 71 native hangs on one near-tie that another CPU's float order may flip.
    /// </summary>
    [Theory]
    [InlineData("source", KernelBackend.Managed, 256)]
    [InlineData("source", KernelBackend.Native, 256)]
    [InlineData("f16", KernelBackend.Managed, 256)]
    [InlineData("f16", KernelBackend.Native, 256)]
    [InlineData("q8", KernelBackend.Managed, 50)]
    [InlineData("q8", KernelBackend.Native, 50)]
    [InlineData("q4", KernelBackend.Managed, 27)]
    [InlineData("q4", KernelBackend.Native, 27)]
    public void Stories260K_F16Cache_GreedyTokensMatchTheReferenceForAtLeast(string quant, KernelBackend backend, int matching)
    {
        var (tokens, _, _) = Stories260KTests.Reference();
        using var model = LanguageModel.Load(Stories260KTests.GgufPath,
            new LoadOptions { Quantization = QuantizationScheme.Parse(quant), Backend = backend, KvCacheType = KvCacheType.F16 });
        Assert.Equal(KvCacheType.F16, model.KvCacheType);
        int[] ids = Stories260KTests.Greedy(model, 256);
        int same = 0;
        while (same < ids.Length && ids[same] == tokens[same]) same++;
        output.WriteLine($"stories260K {quant} f16 cache on {backend}: {same}/256 greedy tokens match");
        Assert.True(same >= matching, $"only the first {same} tokens match (expected at least {matching}).");
    }

    /// <summary>Prefix reuse on an f16 cache: truncating to a shared prefix and continuing gives what a fresh session gives.</summary>
    [Theory]
    [InlineData(KvCacheType.F32)]
    [InlineData(KvCacheType.F16)]
    public void TruncateThenContinue_EqualsAFreshSession(KvCacheType type)
    {
        var r = FixtureReference.Load("gemma2");
        using var model = LanguageModel.Load(r.Folder, new LoadOptions { KvCacheType = type });
        var ids = r.FullSequenceIds;
        var reused = model.CreateSession();
        reused.Prefill(ids.AsSpan(0, 30));
        reused.Truncate(12);
        float[] continued = reused.Prefill(ids.AsSpan(20, 10)).ToArray();

        var fresh = model.CreateSession();
        fresh.Prefill(ids.AsSpan(0, 12));
        float[] expected = fresh.Prefill(ids.AsSpan(20, 10)).ToArray();
        // The prefixes ran in batches of 30 and 12 rows, whose matmuls may sum in other orders: close, not identical.
        FixtureTests.AssertClose(expected, continued, type == KvCacheType.F32 ? 1e-5f : FixtureTests.F16CacheBatchingTolerance, $"{type} cache");
    }

    private static int[] Greedy(LanguageModel model, int[] prompt, int count)
    {
        var generator = new Generator(model.CreateSession(), new GenerationOptions { MaxNewTokens = count, IgnoreEos = true }, model.Special.Eos);
        return generator.Generate(prompt).ToArray();
    }

    private static float[] Random(Random rng, int count)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = (float)(rng.NextDouble() * 2 - 1);
        return values;
    }
}

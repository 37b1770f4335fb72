using OnDeviceLlm.Runtime.Inference;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Inference;

public class SamplerTests
{
    private static float[] RandomLogits(int n, int seed, float scale = 3f)
    {
        var rng = new Random(seed);
        var logits = new float[n];
        for (int i = 0; i < n; i++) logits[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return logits;
    }

    private static double[] Softmax(float[] logits, double temperature)
    {
        double max = logits.Max();
        var p = logits.Select(l => Math.Exp((l - max) / temperature)).ToArray();
        double sum = p.Sum();
        return p.Select(x => x / sum).ToArray();
    }

    /// <summary>Empirical frequency of each id over <paramref name="draws"/> samples of the same logits.</summary>
    private static double[] Histogram(Sampler sampler, float[] logits, int draws)
    {
        var counts = new double[logits.Length];
        var work = new float[logits.Length];
        for (int i = 0; i < draws; i++)
        {
            logits.CopyTo(work, 0);
            counts[sampler.Sample(work, default)]++;
        }
        return counts.Select(c => c / draws).ToArray();
    }

    [Fact]
    public void Greedy_IsArgMax_AndTiesGoToTheLowestId()
    {
        var sampler = new Sampler(new SamplingOptions(), 4);
        Assert.Equal(1, sampler.Sample(new float[] { 1f, 3f, 3f, 2f }, default));
        Assert.Equal(1, Sampler.ArgMax(new float[] { 1f, 3f, 3f, 2f }));

        var logits = RandomLogits(1000, 1);
        int expected = Array.IndexOf(logits, logits.Max());
        var greedy = new Sampler(new SamplingOptions(), 1000);
        Assert.Equal(expected, greedy.Sample(logits, default));
        Assert.Equal(expected, Sampler.ArgMax(logits));
    }

    [Fact]
    public void VeryLowTemperature_AlwaysPicksTheArgMax()
    {
        var logits = RandomLogits(200, 2);
        int best = Sampler.ArgMax(logits);
        var sampler = new Sampler(new SamplingOptions { Temperature = 1e-4f, Seed = 7 }, logits.Length);
        var freq = Histogram(sampler, logits, 2000);
        Assert.Equal(1.0, freq[best]);
    }

    [Fact]
    public void TopK1_IsArgMax_EvenAtHighTemperature()
    {
        var logits = RandomLogits(300, 3, scale: 0.5f);
        int best = Sampler.ArgMax(logits);
        var sampler = new Sampler(new SamplingOptions { Temperature = 5f, TopK = 1, Seed = 1 }, logits.Length);
        Assert.Equal(1.0, Histogram(sampler, logits, 2000)[best]);
    }

    [Fact]
    public void TinyTopP_KeepsOnlyTheMostLikelyToken()
    {
        var logits = RandomLogits(300, 4, scale: 0.5f);
        int best = Sampler.ArgMax(logits);
        var sampler = new Sampler(new SamplingOptions { Temperature = 1f, TopP = 1e-6f, Seed = 1 }, logits.Length);
        Assert.Equal(1.0, Histogram(sampler, logits, 2000)[best]);
    }

    [Fact]
    public void Distribution_MatchesSoftmaxOfLogitsOverTemperature()
    {
        var logits = new float[] { 1.0f, 0.5f, -0.3f, 2.0f, 0.0f, -1.0f, 1.5f, 0.2f };
        const float temperature = 0.7f;
        var sampler = new Sampler(new SamplingOptions { Temperature = temperature, Seed = 123 }, logits.Length);
        var freq = Histogram(sampler, logits, 20000);
        var expected = Softmax(logits, temperature);
        for (int i = 0; i < logits.Length; i++)
            Assert.True(Math.Abs(freq[i] - expected[i]) < 0.02, $"token {i}: drawn {freq[i]:F4}, softmax {expected[i]:F4}");
    }

    [Fact]
    public void TopK_RenormalizesOverTheKBest_AndKeepsTiesWithTheKth()
    {
        var logits = new float[] { 0.1f, 2.0f, 1.0f, 1.5f, 0.3f, -1f };
        var sampler = new Sampler(new SamplingOptions { Temperature = 1f, TopK = 3, Seed = 5 }, logits.Length);
        var freq = Histogram(sampler, logits, 20000);
        var kept = Softmax(new[] { 2.0f, 1.0f, 1.5f }, 1);
        Assert.True(Math.Abs(freq[1] - kept[0]) < 0.02);
        Assert.True(Math.Abs(freq[2] - kept[1]) < 0.02);
        Assert.True(Math.Abs(freq[3] - kept[2]) < 0.02);
        Assert.Equal(0, freq[0] + freq[4] + freq[5]);

        // HF keeps every token whose logit equals the k-th largest.
        var tied = new float[] { 1f, 5f, 4f, 4f, 4f, 0f };
        var tiedSampler = new Sampler(new SamplingOptions { Temperature = 3f, TopK = 2, Seed = 5 }, tied.Length);
        var tiedFreq = Histogram(tiedSampler, tied, 5000);
        Assert.All(new[] { 1, 2, 3, 4 }, id => Assert.True(tiedFreq[id] > 0.05, $"token {id} was never drawn"));
        Assert.Equal(0, tiedFreq[0] + tiedFreq[5]);
    }

    [Fact]
    public void TopK_OverALargeVocabulary_DrawsOnlyTheKBest()
    {
        // Ascending logits are the selection's worst case: every token beats the current k-th best.
        const int n = 2000, k = 50;
        var logits = Enumerable.Range(0, n).Select(i => i * 1e-3f).ToArray();
        var sampler = new Sampler(new SamplingOptions { Temperature = 1f, TopK = k, Seed = 8 }, n);
        var freq = Histogram(sampler, logits, 5000);
        var drawn = Enumerable.Range(0, n).Where(i => freq[i] > 0).ToArray();
        Assert.True(drawn.Min() >= n - k, $"token {drawn.Min()} is outside the top {k}");
        Assert.True(drawn.Length > k * 0.97, $"only {drawn.Length} of the top {k} drawn");
    }

    [Fact]
    public void TopP_KeepsTokensWhoseHigherRankedMassIsBelowP()
    {
        // p = 0.5, 0.3, 0.15, 0.05: the mass above the third token is 0.8 >= 0.75, so two survive.
        var logits = new[] { 0.5f, 0.3f, 0.15f, 0.05f }.Select(p => MathF.Log(p)).ToArray();
        var sampler = new Sampler(new SamplingOptions { Temperature = 1f, TopP = 0.75f, Seed = 9 }, logits.Length);
        var freq = Histogram(sampler, logits, 20000);
        Assert.True(Math.Abs(freq[0] - 0.625) < 0.02, $"{freq[0]}");
        Assert.True(Math.Abs(freq[1] - 0.375) < 0.02, $"{freq[1]}");
        Assert.Equal(0, freq[2] + freq[3]);
    }

    [Fact]
    public void TopP_OverALargeVocabulary_DrawsExactlyFromTheNucleus()
    {
        // A flat-ish distribution with masked tokens makes the nucleus thousands of tokens long,
        // which forces the sorted prefix to grow many times and the selection to meet long runs
        // of equal (-inf) keys.
        const int n = 2000;
        var logits = RandomLogits(n, 11, scale: 1f);
        for (int i = 0; i < n; i += 3) logits[i] = float.NegativeInfinity;
        const float topP = 0.6f, temperature = 1.3f;

        var probs = Softmax(logits, temperature);
        var order = Enumerable.Range(0, n).OrderByDescending(i => probs[i]).ToArray();
        var nucleus = new HashSet<int>();
        double above = 0;
        foreach (int id in order)
        {
            if (nucleus.Count > 0 && above >= topP) break;
            nucleus.Add(id);
            above += probs[id];
        }
        Assert.InRange(nucleus.Count, 300, n / 2);
        // The sampler sums in a different order and precision, so it may settle the one token
        // at the boundary differently.
        var allowed = new HashSet<int>(nucleus) { order[nucleus.Count] };

        var sampler = new Sampler(new SamplingOptions { Temperature = temperature, TopP = topP, Seed = 3 }, n);
        var freq = Histogram(sampler, logits, 12000);
        var drawn = Enumerable.Range(0, n).Where(i => freq[i] > 0).ToHashSet();
        Assert.Subset(allowed, drawn);
        Assert.True(drawn.Count > nucleus.Count * 0.97, $"only {drawn.Count} of {nucleus.Count} nucleus tokens drawn");
    }

    [Fact]
    public void MinP_ExcludesTokensBelowTheThreshold()
    {
        // p_max = 0.4, min_p 0.3 → threshold 0.12: tokens 3 (0.1) and 4 (0.05) never appear.
        var probs = new[] { 0.4f, 0.3f, 0.15f, 0.1f, 0.05f };
        var logits = probs.Select(p => MathF.Log(p)).ToArray();
        var sampler = new Sampler(new SamplingOptions { Temperature = 1f, MinP = 0.3f, Seed = 17 }, logits.Length);
        var freq = Histogram(sampler, logits, 20000);
        Assert.Equal(0, freq[3] + freq[4]);
        Assert.True(Math.Abs(freq[0] - 0.4 / 0.85) < 0.02, $"{freq[0]}");
        Assert.True(Math.Abs(freq[1] - 0.3 / 0.85) < 0.02, $"{freq[1]}");
        Assert.True(Math.Abs(freq[2] - 0.15 / 0.85) < 0.02, $"{freq[2]}");
    }

    [Fact]
    public void SameSeed_GivesTheSameSequence_OtherSeed_ADifferentOne()
    {
        var logits = RandomLogits(100, 5, scale: 0.5f);
        int[] Run(int seed)
        {
            var sampler = new Sampler(new SamplingOptions { Temperature = 1f, TopK = 50, TopP = 0.95f, Seed = seed }, logits.Length);
            var work = new float[logits.Length];
            var ids = new int[64];
            for (int i = 0; i < ids.Length; i++)
            {
                logits.CopyTo(work, 0);
                ids[i] = sampler.Sample(work, default);
            }
            return ids;
        }
        Assert.Equal(Run(42), Run(42));
        Assert.NotEqual(Run(42), Run(43));
    }

    [Fact]
    public void RepetitionPenalty_FollowsTheHuggingFaceFormula_OncePerDistinctToken()
    {
        var sampler = new Sampler(new SamplingOptions { RepetitionPenalty = 2f }, 5);
        var logits = new[] { 2f, -2f, 0.5f, 1f, 0f };
        // Token 1 occurs twice but is penalized once; token 2 never occurs.
        int picked = sampler.Sample(logits, new[] { 0, 1, 1, 3 });
        Assert.Equal(new[] { 1f, -4f, 0.5f, 0.5f, 0f }, logits);
        Assert.Equal(0, picked);

        // The counts of the first call must not leak into the next one.
        var again = new[] { 2f, -2f, 0.5f, 1f, 0f };
        sampler.Sample(again, new[] { 4 });
        Assert.Equal(new[] { 2f, -2f, 0.5f, 1f, 0f }, again);
    }

    [Fact]
    public void FrequencyAndPresencePenalties_SubtractCountTimesFrequencyPlusPresence()
    {
        var sampler = new Sampler(new SamplingOptions { FrequencyPenalty = 0.5f, PresencePenalty = 0.25f }, 3);
        var logits = new[] { 1f, 1f, 1f };
        Assert.Equal(2, sampler.Sample(logits, new[] { 0, 0, 1 }));
        Assert.Equal(new[] { -0.25f, 0.25f, 1f }, logits);
    }

    [Fact]
    public void Sample_DoesNotAllocate()
    {
        const int n = 4096;
        var logits = RandomLogits(n, 6);
        var work = new float[n];
        var previous = Enumerable.Range(0, 300).Select(i => i * 7 % n).ToArray();
        var sampler = new Sampler(new SamplingOptions
        {
            Temperature = 0.8f, TopK = 100, TopP = 0.9f, MinP = 0.05f,
            RepetitionPenalty = 1.2f, FrequencyPenalty = 0.1f, PresencePenalty = 0.1f, Seed = 1,
        }, n);
        var nucleusOnly = new Sampler(new SamplingOptions { Temperature = 1f, TopP = 0.5f, Seed = 1 }, n);
        for (int i = 0; i < 10; i++)
        {
            logits.CopyTo(work, 0); sampler.Sample(work, previous);
            logits.CopyTo(work, 0); nucleusOnly.Sample(work, previous);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 200; i++)
        {
            logits.CopyTo(work, 0); sampler.Sample(work, previous);
            logits.CopyTo(work, 0); nucleusOnly.Sample(work, previous);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void BadInput_RaisesTypedExceptions()
    {
        var sampler = new Sampler(new SamplingOptions { RepetitionPenalty = 1.1f, Temperature = 1f }, 4);
        Assert.Throws<InferenceException>(() => sampler.Sample(new float[4], new[] { 1, 4 }));
        Assert.Throws<InferenceException>(() => sampler.Sample(new float[4], new[] { -1 }));
        Assert.Throws<ArgumentException>(() => sampler.Sample(new float[5], default));
        Assert.Throws<InferenceException>(() => sampler.Sample(new[] { 0f, float.NaN, 1f, 2f }, default));
        Assert.Throws<InferenceException>(() => sampler.Sample(Enumerable.Repeat(float.NegativeInfinity, 4).ToArray(), default));
        // A failed call must not leave stale counts behind.
        var logits = new[] { 1f, 1f, 1f, 1f };
        sampler.Sample(logits, new[] { 2 });
        Assert.Equal(new[] { 1f, 1f, 1f / 1.1f, 1f }, logits);
    }

    public static TheoryData<SamplingOptions, string> BadOptions => new()
    {
        { new SamplingOptions { Temperature = -0.1f }, nameof(SamplingOptions.Temperature) },
        { new SamplingOptions { Temperature = float.NaN }, nameof(SamplingOptions.Temperature) },
        { new SamplingOptions { TopK = -1 }, nameof(SamplingOptions.TopK) },
        { new SamplingOptions { TopP = 0f }, nameof(SamplingOptions.TopP) },
        { new SamplingOptions { TopP = 1.01f }, nameof(SamplingOptions.TopP) },
        { new SamplingOptions { MinP = -0.01f }, nameof(SamplingOptions.MinP) },
        { new SamplingOptions { MinP = 1.5f }, nameof(SamplingOptions.MinP) },
        { new SamplingOptions { RepetitionPenalty = 0f }, nameof(SamplingOptions.RepetitionPenalty) },
        { new SamplingOptions { RepetitionPenalty = -1f }, nameof(SamplingOptions.RepetitionPenalty) },
        { new SamplingOptions { FrequencyPenalty = float.NaN }, nameof(SamplingOptions.FrequencyPenalty) },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void Validate_RejectsOutOfRangeOptions(SamplingOptions options, string parameter)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);
        Assert.Equal(parameter, e.ParamName);
        Assert.Contains(parameter, e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(options, 10));
    }

    [Fact]
    public void Validate_AcceptsTheDefaultsAndBoundaryValues()
    {
        new SamplingOptions().Validate();
        new SamplingOptions { Temperature = 2f, TopK = 40, TopP = 1f, MinP = 1f, RepetitionPenalty = 0.5f, FrequencyPenalty = -1f }.Validate();
    }
}

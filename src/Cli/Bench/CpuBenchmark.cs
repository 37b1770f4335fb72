using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Inference;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Cli.Bench;

internal sealed record BenchResult
{
    public required string Model { get; init; }
    public required string Quant { get; init; }
    public required string Kernels { get; init; }
    public required int Threads { get; init; }
    public required int PromptTokens { get; init; }
    public required int GenTokens { get; init; }
    public required double OpenMs { get; init; }
    public required double PrefillTokS { get; init; }
    public required double TtftMs { get; init; }
    public required double DecodeTokS { get; init; }
    public required long PeakRssBytes { get; init; }
    public required long FileBytes { get; init; }
    public required long WeightBytesPerToken { get; init; }
    public required double ReadBandwidthGbs { get; init; }
    /// <summary>Share of decode time spent inside the matmul kernels; the rest is the other operators and managed code.</summary>
    public required double DecodeMatMulShare { get; init; }
    /// <summary>
    /// Share of decode time spent outside native calls (managed glue, and any operator still in C#); null when the
    /// kernels are not native. Measured by <see cref="NativeKernels.MeasureNativeTime"/>: two timestamps per native call.
    /// </summary>
    public required double? ManagedOverheadFraction { get; init; }
    /// <summary>Element type of the KV cache and the memory of one cache for the whole prompt and generation.</summary>
    public required KvCacheType KvCacheType { get; init; }
    public required long KvCacheBytes { get; init; }
    public double DecodeRooflineRatio => DecodeTokS * WeightBytesPerToken / (ReadBandwidthGbs * 1e9);
}

/// <summary>
/// Prefill and decode speed on the CPU, medians of several runs, with the memory read bandwidth measured in the
/// same process as the physical limit decode is compared with. Decode feeds fixed random tokens, as llama-bench does.
/// </summary>
internal static class CpuBenchmark
{
    public static BenchResult Run(string path, string label, LoadOptions options, int promptTokens, int genTokens, int repeats)
    {
        var open = Stopwatch.StartNew();
        using var model = LanguageModel.Load(path, options);
        double openMs = open.Elapsed.TotalMilliseconds;
        var config = model.Config;
        if (promptTokens < 1 || genTokens < 1 || promptTokens + genTokens > config.ContextLength)
            throw new ArgumentException($"--prompt-tokens and --gen-tokens must be at least 1 and together fit the context of {config.ContextLength}.");

        var random = new Random(7);
        var prompt = new int[promptTokens];
        for (int i = 0; i < prompt.Length; i++) prompt[i] = random.Next(config.VocabSize);
        var generated = new int[genTokens];
        for (int i = 0; i < generated.Length; i++) generated[i] = random.Next(config.VocabSize);

        // The model's own forward pass over kernels that also count the time spent inside MatMul.
        var kernels = new TimedKernels(model.Kernels);
        var transformer = new Transformer(config, model.File, kernels);
        var prefill = new double[repeats];
        var decode = new double[repeats];
        var matmulShare = new double[repeats];
        var managedShare = new double[repeats];
        var native = model.Kernels as NativeKernels;
        for (int r = 0; r < repeats; r++)
        {
            using var session = new InferenceSession(transformer, promptTokens + genTokens, model.KvCacheType);
            var watch = Stopwatch.StartNew();
            session.Prefill(prompt);
            prefill[r] = watch.Elapsed.TotalSeconds;
            kernels.Elapsed = 0;
            if (native is not null)
            {
                native.NativeTicks = 0;
                native.MeasureNativeTime = true;
            }
            watch.Restart();
            foreach (int token in generated) session.Decode(token);
            decode[r] = watch.Elapsed.TotalSeconds;
            if (native is not null)
            {
                native.MeasureNativeTime = false;
                managedShare[r] = 1 - Stopwatch.GetElapsedTime(0, native.NativeTicks).TotalSeconds / decode[r];
            }
            matmulShare[r] = Stopwatch.GetElapsedTime(0, kernels.Elapsed).TotalSeconds / decode[r];
        }
        long peakRss = Process.GetCurrentProcess().PeakWorkingSet64;
        double prefillSeconds = Median(prefill);
        int threads = native?.Threads ?? 1;

        return new BenchResult
        {
            Model = label,
            Quant = model.File.Provenance.Quantization,
            Kernels = model.Kernels.ToString() ?? model.Kernels.Name,
            Threads = threads,
            PromptTokens = promptTokens,
            GenTokens = genTokens,
            OpenMs = openMs,
            PrefillTokS = promptTokens / prefillSeconds,
            TtftMs = prefillSeconds * 1000,
            DecodeTokS = genTokens / Median(decode),
            DecodeMatMulShare = Median(matmulShare),
            ManagedOverheadFraction = native is null ? null : Median(managedShare),
            PeakRssBytes = peakRss,
            KvCacheType = model.KvCacheType,
            KvCacheBytes = KvCache.ByteSize(config, promptTokens + genTokens, model.KvCacheType),
            FileBytes = model.File.FileSize,
            WeightBytesPerToken = WeightBytesPerToken(model),
            // After the model runs, so the probe's buffer never counts toward the model's peak resident memory.
            ReadBandwidthGbs = ReadBandwidth(threads) / 1e9,
        };
    }

    /// <summary>
    /// Bytes of weights one decode step reads: every matrix once, except the token embedding, of which a step reads
    /// one row, unless it doubles as the output head.
    /// </summary>
    private static long WeightBytesPerToken(LanguageModel model)
    {
        long bytes = 0;
        foreach (var t in model.File.Tensors)
        {
            if (t.Name == TensorNames.TokenEmbedding && !model.Config.TiedEmbeddings) continue;
            bytes += t.ByteLength;
        }
        return bytes;
    }

    /// <summary>Bytes per second that <paramref name="threads"/> threads read from a buffer far larger than the caches: the best of five passes.</summary>
    public static unsafe double ReadBandwidth(int threads)
    {
        const long size = 1L << 30;
        threads = Math.Max(1, threads);
        byte* buffer = (byte*)NativeMemory.AlignedAlloc((nuint)size, 64);
        try
        {
            NativeMemory.Fill(buffer, (nuint)size, 1);
            long slice = size / threads / 32 * 32;
            var sums = new long[threads];
            double best = 0;
            for (int pass = 0; pass < 5; pass++)
            {
                var watch = Stopwatch.StartNew();
                Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
                {
                    var acc0 = Vector256<long>.Zero;
                    var acc1 = Vector256<long>.Zero;
                    byte* p = buffer + t * slice, end = p + slice;
                    for (; p < end; p += 64)
                    {
                        acc0 += Vector256.LoadAligned((long*)p);
                        acc1 += Vector256.LoadAligned((long*)(p + 32));
                    }
                    sums[t] = Vector256.Sum(acc0 + acc1);
                });
                best = Math.Max(best, slice * threads / watch.Elapsed.TotalSeconds);
            }
            GC.KeepAlive(sums);
            return best;
        }
        finally { NativeMemory.AlignedFree(buffer); }
    }

    /// <summary>Passes every call through, adding the time spent in <see cref="MatMul"/> to <see cref="Elapsed"/> (Stopwatch ticks).</summary>
    private sealed class TimedKernels(IKernels inner) : IKernels
    {
        public long Elapsed;

        public string Name => inner.Name;

        public void MatMul(ReadOnlySpan<float> x, int m, ModelTensor w, Span<float> y)
        {
            long start = Stopwatch.GetTimestamp();
            inner.MatMul(x, m, w, y);
            Elapsed += Stopwatch.GetTimestamp() - start;
        }

        public void RmsNorm(ReadOnlySpan<float> x, int rows, int dim, ReadOnlySpan<float> weight, float weightOffset, float eps, Span<float> y)
            => inner.RmsNorm(x, rows, dim, weight, weightOffset, eps, y);

        public void LayerNorm(ReadOnlySpan<float> x, int rows, int dim, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps, Span<float> y)
            => inner.LayerNorm(x, rows, dim, weight, bias, eps, y);

        public void RopeTables(int pos0, int rows, ReadOnlySpan<float> invFreq, Span<float> cos, Span<float> sin)
            => inner.RopeTables(pos0, rows, invFreq, cos, sin);

        public void Rope(Span<float> x, int rows, int heads, int headDim, int rotaryDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
            => inner.Rope(x, rows, heads, headDim, rotaryDim, cos, sin);

        public void Activate(Activation activation, ReadOnlySpan<float> x, Span<float> y) => inner.Activate(activation, x, y);

        public void GatedActivate(Activation activation, ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> y)
            => inner.GatedActivate(activation, gate, up, y);

        public void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y) => inner.Add(a, b, y);

        public void Softcap(ReadOnlySpan<float> x, float cap, Span<float> y) => inner.Softcap(x, cap, y);
        public void Attention(in AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, Span<float> output) =>
            inner.Attention(shape, q, keys, values, output);

        public void Attention(in AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<Half> keys, ReadOnlySpan<Half> values, Span<float> output) =>
            inner.Attention(shape, q, keys, values, output);
    }

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted[sorted.Length / 2];
    }
}

using System.Diagnostics;
using System.Runtime.InteropServices;
using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Inference;

/// <summary>Decode and prefill speed of the CUDA backend, as ratios against the device bandwidth measured in the same run.</summary>
public sealed record CudaBenchmarkResult
{
    public required string Model { get; init; }
    public required string Quant { get; init; }
    public required string Device { get; init; }
    public required int PromptTokens { get; init; }
    public required int GenTokens { get; init; }
    public required double OpenMs { get; init; }
    public required double PrefillTokS { get; init; }
    public required double TtftMs { get; init; }
    public required double DecodeTokS { get; init; }
    /// <summary>Decode with every kernel launched one by one instead of replaying the captured graph.</summary>
    public required double DecodeNoGraphTokS { get; init; }
    public required long WeightBytesPerToken { get; init; }
    public required double ReadBandwidthGbs { get; init; }
    public required KvCacheType KvCacheType { get; init; }
    /// <summary>Device memory of the KV cache (prompt plus generated positions).</summary>
    public required long KvCacheBytes { get; init; }
    public double DecodeRooflineRatio => DecodeTokS * WeightBytesPerToken / (ReadBandwidthGbs * 1e9);
}

/// <summary>
/// Runs a model of a given shape with random weights on the GPU: prefill of a prompt, then decode, medians of
/// several runs. Decode feeds fixed random tokens (no sampling), as llama.cpp's llama-bench does.
/// </summary>
public static class CudaBenchmark
{
    /// <summary><paramref name="kvCacheType"/> Auto resolves as for <see cref="LanguageModel.KvCacheType"/> (f16 unless the matrices are f32).</summary>
    public static CudaBenchmarkResult Run(string shapeName, TensorType matrixType, int promptTokens, int genTokens, int repeats = 3,
        KvCacheType kvCacheType = KvCacheType.Auto)
    {
        var device = CudaDevices.First ?? throw new CudaException($"The CUDA benchmark needs a GPU: {CudaDevices.UnavailableReason}.");
        var config = SyntheticShapes.ByName(shapeName);
        if (promptTokens < 1 || genTokens < 1 || promptTokens + genTokens > config.ContextLength)
            throw new ArgumentException($"The prompt and generated tokens must be at least 1 each and fit the context of {config.ContextLength}.");
        double bandwidth = CudaDevices.MeasureBandwidth();

        using var weights = new SyntheticWeights(config, matrixType, seed: 42);
        var open = Stopwatch.StartNew();
        using var gpu = new CudaTransformer(config, weights, device);
        double openMs = open.Elapsed.TotalMilliseconds;

        var random = new Random(7);
        var prompt = new int[promptTokens];
        for (int i = 0; i < prompt.Length; i++) prompt[i] = random.Next(config.VocabSize);
        var generated = new int[genTokens];
        for (int i = 0; i < generated.Length; i++) generated[i] = random.Next(config.VocabSize);

        using var sequence = gpu.CreateSequence(promptTokens + genTokens, kvCacheType);
        // The buffer an InferenceSession uses: the sequence's page-locked one, which the logits are copied into directly.
        var logits = sequence.LogitsBuffer ?? new float[config.VocabSize];
        // Warm-up: module load, graph capture, clocks.
        sequence.Forward(prompt, logits);
        for (int i = 0; i < Math.Min(8, genTokens); i++) sequence.Forward(generated.AsSpan(i, 1), logits);

        var prefill = new List<double>();
        var decode = new List<double>();
        var decodeNoGraph = new List<double>();
        for (int r = 0; r < repeats; r++)
        {
            sequence.Truncate(0);
            var watch = Stopwatch.StartNew();
            sequence.Forward(prompt, logits);
            prefill.Add(watch.Elapsed.TotalSeconds);
            foreach (bool graph in new[] { true, false })
            {
                sequence.Truncate(promptTokens);
                sequence.UseGraph = graph;
                watch.Restart();
                for (int i = 0; i < genTokens; i++) sequence.Forward(generated.AsSpan(i, 1), logits);
                (graph ? decode : decodeNoGraph).Add(watch.Elapsed.TotalSeconds);
            }
            sequence.UseGraph = true;
        }
        double Median(List<double> v) { v.Sort(); return v[v.Count / 2]; }
        double prefillSeconds = Median(prefill);
        return new CudaBenchmarkResult
        {
            Model = shapeName,
            Quant = matrixType.ToString().ToLowerInvariant(),
            Device = device.ToString(),
            PromptTokens = promptTokens,
            GenTokens = genTokens,
            OpenMs = openMs,
            PrefillTokS = promptTokens / prefillSeconds,
            TtftMs = prefillSeconds * 1000,
            DecodeTokS = genTokens / Median(decode),
            DecodeNoGraphTokS = genTokens / Median(decodeNoGraph),
            WeightBytesPerToken = gpu.WeightBytes,
            ReadBandwidthGbs = bandwidth / 1e9,
            KvCacheType = sequence.KvCacheType,
            KvCacheBytes = sequence.KvCacheBytes,
        };
    }
}

/// <summary>
/// Random weights of a config's shape in native memory: matrices in one stored type, vectors in f32. Values are
/// small and finite (no NaN scales), never zeros, so the kernels do real work.
/// </summary>
internal sealed unsafe class SyntheticWeights : ITensorSource, IDisposable
{
    private readonly List<ModelTensor> _tensors = [];
    private readonly Dictionary<string, ModelTensor> _byName = [];

    public SyntheticWeights(ModelConfig config, TensorType matrixType, ulong seed)
    {
        foreach (var (name, shape, required) in TensorNames.Expected(config))
        {
            if (!required) continue;
            bool matrix = shape.Length == 2 && !name.EndsWith("norm.weight", StringComparison.Ordinal);
            var type = matrix ? matrixType : TensorType.F32;
            long bytes = TensorTypes.ByteLength(type, shape);
            nint data = (nint)NativeMemory.AlignedAlloc((nuint)bytes, 64);
            Fill((byte*)data, bytes, type, shape[^1], seed++);
            var tensor = new ModelTensor(name, type, shape, data, bytes);
            _tensors.Add(tensor);
            _byName[name] = tensor;
        }
    }

    public IReadOnlyList<ModelTensor> Tensors => _tensors;
    public ModelTensor? Find(string name) => _byName.GetValueOrDefault(name);

    private static void Fill(byte* data, long bytes, TensorType type, long cols, ulong seed)
    {
        long chunk = 1 << 24;
        long chunks = (bytes + chunk - 1) / chunk;
        Parallel.For(0, chunks, c =>
        {
            ulong s = seed * 0x9E3779B97F4A7C15UL + (ulong)c * 0xBF58476D1CE4E5B9UL + 1;
            long end = Math.Min(bytes, (c + 1) * chunk);
            for (long i = c * chunk; i + 8 <= end; i += 8)
            {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                *(ulong*)(data + i) = s;
            }
        });
        // Make every value finite and small: f32/f16/bf16 get a bounded exponent; block scales a small f16.
        switch (type)
        {
            case TensorType.F32:
                for (long i = 0; i < bytes / 4; i++) ((uint*)data)[i] = (((uint*)data)[i] & 0x807FFFFFu) | 0x3C000000u; // ±[2^-7, 2^-6)
                break;
            case TensorType.F16:
                for (long i = 0; i < bytes / 2; i++) ((ushort*)data)[i] = (ushort)((((ushort*)data)[i] & 0x83FF) | 0x2000); // ±[2^-7, 2^-6)
                break;
            case TensorType.BF16:
                for (long i = 0; i < bytes / 2; i++) ((ushort*)data)[i] = (ushort)((((ushort*)data)[i] & 0x807F) | 0x3C00);
                break;
            case TensorType.Q8_0:
            case TensorType.Q4_0:
                int blockBytes = type == TensorType.Q8_0 ? 34 : 18;
                for (long b = 0; b < bytes / blockBytes; b++) *(Half*)(data + b * blockBytes) = (Half)0.001f;
                break;
            case TensorType.Int8:
                long rows = bytes / (cols + 4);
                for (long r = 0; r < rows; r++) ((float*)(data + rows * cols))[r] = 0.001f;
                break;
        }
    }

    public void Dispose()
    {
        foreach (var t in _tensors) NativeMemory.AlignedFree((void*)t.Data);
        _tensors.Clear();
    }
}

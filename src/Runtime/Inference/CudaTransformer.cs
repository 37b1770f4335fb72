using System.Runtime.InteropServices;
using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Model;
using static OnDeviceLlm.Runtime.Model.TensorNames;

namespace OnDeviceLlm.Runtime.Inference;

/// <summary>
/// The model's weights uploaded once to a CUDA device in their stored types, and the forward pass of
/// <see cref="Transformer"/> run there (src/Runtime.Native/src/cuda). Sessions come from <see cref="CreateSequence"/>.
/// Thread-safe to share; dispose it after every sequence made from it.
/// </summary>
public sealed unsafe class CudaTransformer : IDisposable
{
    private readonly CudaNative.Api _api;
    private nint _model;
    private readonly TensorType _queryWeightType;

    /// <summary>Uploads every weight of <paramref name="weights"/>; throws <see cref="CudaException"/> when the device cannot hold or run it.</summary>
    public CudaTransformer(ModelConfig config, ITensorSource weights, CudaDeviceInfo device)
    {
        if (!CudaNative.TryGet(out var api, out var reason)) throw new CudaException($"The CUDA backend is unavailable: {reason}.");
        _api = api;
        Config = config;
        Device = device;
        ModelTensor Get(string name) => weights.Find(name) ?? throw new ModelFormatException("model", $"tensor {name} is missing.");

        var pins = new List<GCHandle>();
        try
        {
            nint Pin(float[]? values)
            {
                if (values is null) return 0;
                var handle = GCHandle.Alloc(values, GCHandleType.Pinned);
                pins.Add(handle);
                return handle.AddrOfPinnedObject();
            }
            nint Vector(string name) => Pin(weights.Find(name)?.ToFloat32());
            static CudaNative.Matrix M(ModelTensor? t) => t is null ? default : new CudaNative.Matrix
            {
                Data = t.Data, Bytes = t.ByteLength, Type = (int)t.Type, Rows = t.Rows, Cols = t.Cols,
            };

            var c = new CudaNative.Config
            {
                Vocab = config.VocabSize, Hidden = config.HiddenSize, Layers = config.NumLayers, Heads = config.NumHeads,
                KvHeads = config.NumKvHeads, HeadDim = config.HeadDim, Ffn = config.IntermediateSize,
                NormKind = (int)config.Norm, Activation = (int)config.Activation, Layout = (int)config.Layout,
                RotaryDim = config.Positions == PositionEncoding.Rope ? config.RotaryDim : 0,
                SlidingWindow = config.SlidingWindow, NormEps = config.NormEps,
                EmbedScale = config.ScaleEmbeddings ? (float)Math.Sqrt(config.HiddenSize) : 1f,
                AttnScale = config.AttentionScale, AttnSoftcap = config.AttentionSoftcap, FinalSoftcap = config.FinalSoftcap,
            };
            var embedding = Get(TokenEmbedding);
            _queryWeightType = Get(Layer(0, AttnQ)).Type;
            var matrices = stackalloc CudaNative.Matrix[2];
            matrices[0] = M(embedding);
            matrices[1] = M(config.TiedEmbeddings ? embedding : Get(Output));

            var layers = new CudaNative.Layer[config.NumLayers];
            for (int i = 0; i < config.NumLayers; i++)
            {
                string L(string n) => Layer(i, n);
                layers[i] = new CudaNative.Layer
                {
                    Wq = M(Get(L(AttnQ))), Wk = M(Get(L(AttnK))), Wv = M(Get(L(AttnV))), Wo = M(Get(L(AttnOutput))),
                    Up = M(Get(L(FfnUp))), Down = M(Get(L(FfnDown))), Gate = M(weights.Find(L(FfnGate))),
                    AttnNorm = Pin(Get(L(AttnNorm)).ToFloat32()), AttnNormBias = Vector(L(AttnNormBias)),
                    FfnNorm = Vector(L(FfnNorm)), FfnNormBias = Vector(L(FfnNormBias)),
                    PostAttnNorm = Vector(L(PostAttnNorm)), PostFfnNorm = Vector(L(PostFfnNorm)),
                    Bq = Vector(L(AttnQBias)), Bk = Vector(L(AttnKBias)), Bv = Vector(L(AttnVBias)), Bo = Vector(L(AttnOutputBias)),
                    BUp = Vector(L(FfnUpBias)), BDown = Vector(L(FfnDownBias)),
                    QNorm = Vector(L(AttnQNorm)), KNorm = Vector(L(AttnKNorm)),
                    Sliding = config.IsSlidingLayer(i) ? 1 : 0,
                };
            }

            // inv_freq and the ALiBi slopes exactly as Transformer computes them (slopes doubled: see its constructor).
            var invFreq = new float[Math.Max(1, config.RotaryDim / 2)];
            for (int i = 0; i < config.RotaryDim / 2; i++)
                invFreq[i] = (float)(1.0 / Math.Pow(config.RopeTheta, 2.0 * i / config.RotaryDim));
            float[]? slopes = null;
            if (config.Positions == PositionEncoding.Alibi)
            {
                slopes = MathOps.AlibiSlopes(config.NumHeads);
                for (int i = 0; i < slopes.Length; i++) slopes[i] *= 2f;
            }

            nint model;
            int status;
            fixed (CudaNative.Layer* pLayers = layers)
            {
                status = api.ModelCreate(device.Index, &c, &matrices[0], &matrices[1], (float*)Pin(Get(OutputNorm).ToFloat32()),
                    (float*)Vector(OutputNormBias), (float*)Vector(OutputBias), pLayers, (float*)Pin(invFreq), (float*)Pin(slopes), &model);
            }
            api.Check(status, $"uploading the model to {device}");
            _model = model;
            WeightBytes = api.ModelWeightBytes(model);
        }
        finally
        {
            foreach (var pin in pins) pin.Free();
        }
    }

    public ModelConfig Config { get; }
    public CudaDeviceInfo Device { get; }
    /// <summary>Bytes of weights resident on the device (the tied embedding counted once).</summary>
    public long WeightBytes { get; }

    /// <summary>
    /// A KV cache of <paramref name="contextLength"/> positions (default: the model's) on the device, of
    /// <paramref name="kvCacheType"/> with Auto resolved as for a CPU session (<see cref="KvCache.Resolve"/>), so both
    /// backends round keys and values alike.
    /// </summary>
    public CudaSequence CreateSequence(int? contextLength = null, KvCacheType kvCacheType = KvCacheType.Auto)
    {
        ObjectDisposedException.ThrowIf(_model == 0, this);
        int capacity = contextLength ?? Config.ContextLength;
        if (capacity <= 0 || capacity > Config.ContextLength)
            throw new ArgumentOutOfRangeException(nameof(contextLength), $"The context length must be between 1 and the model's {Config.ContextLength}.");
        var type = ResolveKvCacheType(kvCacheType);
        nint sequence;
        _api.Check(_api.SequenceCreate(_model, capacity, type == KvCacheType.F16 ? 1 : 0, &sequence),
            $"creating a sequence of {capacity} positions with an {type} KV cache");
        return new CudaSequence(this, _api, sequence, capacity, type);
    }

    /// <summary><paramref name="requested"/> with Auto decided by the stored type of the model's matrices, as on the CPU.</summary>
    public KvCacheType ResolveKvCacheType(KvCacheType requested) => KvCache.Resolve(requested, _queryWeightType);

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    ~CudaTransformer() => Free();

    private void Free()
    {
        if (_model == 0) return;
        _api.ModelFree(_model);
        _model = 0;
    }
}

/// <summary>One sequence on the device: its KV cache and activations. Decode steps replay a captured CUDA graph.</summary>
public sealed unsafe class CudaSequence : IForwardPass
{
    private readonly CudaTransformer _owner;
    private readonly CudaNative.Api _api;
    private nint _sequence;

    internal CudaSequence(CudaTransformer owner, CudaNative.Api api, nint sequence, int capacity, KvCacheType kvCacheType)
    {
        _owner = owner;
        _api = api;
        _sequence = sequence;
        Capacity = capacity;
        KvCacheType = kvCacheType;
    }

    public int Length { get; private set; }
    public int Capacity { get; }
    /// <summary>Element type of the device KV cache: F32 or F16 (never Auto).</summary>
    public KvCacheType KvCacheType { get; }
    /// <summary>Device memory of the KV cache.</summary>
    public long KvCacheBytes => KvCache.ByteSize(_owner.Config, Capacity, KvCacheType);
    public int VocabSize => _owner.Config.VocabSize;
    /// <summary>Replay one captured graph for each one-token step (default) instead of launching every kernel.</summary>
    public bool UseGraph { get; set; } = true;

    /// <summary>
    /// One row of logits on the pinned object heap, page-locked for the device, so a step's logits are copied straight
    /// into it: a copy through the library's own buffer cost 4–7% of a Gemma-2B decode step on an H100. Null when the
    /// device refused to page-lock it (the copy then goes through the library's buffer).
    /// </summary>
    public float[]? LogitsBuffer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_sequence == 0, this);
            if (_logitsBuffer is null && !_logitsBufferRefused)
            {
                var buffer = GC.AllocateUninitializedArray<float>(VocabSize, pinned: true);
                fixed (float* p = buffer)
                {
                    if (_api.SequenceSetOutput(_sequence, p, buffer.Length) == CudaNative.StatusOk) _logitsBuffer = buffer;
                    else _logitsBufferRefused = true;
                }
            }
            return _logitsBuffer;
        }
    }

    private float[]? _logitsBuffer;
    private bool _logitsBufferRefused;

    public void Forward(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        ObjectDisposedException.ThrowIf(_sequence == 0, this);
        int n = tokens.Length, v = VocabSize;
        bool allPositions = logits.Length >= (long)n * v && n > 1;
        if (logits.Length < v) throw new ArgumentException($"The logits buffer needs at least {v} values.", nameof(logits));
        int status;
        fixed (int* pTokens = tokens)
        fixed (float* pLogits = logits)
            status = _api.SequenceForward(_sequence, pTokens, n, Length, allPositions ? 1 : 0, UseGraph ? 1 : 0, pLogits);
        if (status != CudaNative.StatusOk)
            throw new CudaException($"The CUDA forward pass over {n} tokens at position {Length} failed: {_api.LastErrorMessage}.");
        Length += n;
    }

    public void Truncate(int length)
    {
        if ((uint)length > (uint)Length) throw new ArgumentOutOfRangeException(nameof(length), $"Cannot keep {length} positions of a cache holding {Length}.");
        Length = length;
    }

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    // Device memory is not pressure the GC sees, so sessions should be disposed; this only catches leaks.
    ~CudaSequence() => Free();

    private void Free()
    {
        if (_sequence == 0) return;
        _api.SequenceFree(_sequence);
        _sequence = 0;
    }
}

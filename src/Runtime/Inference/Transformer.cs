using System.Collections.Concurrent;
using System.Numerics.Tensors;
using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Model;
using static OnDeviceLlm.Runtime.Model.TensorNames;

namespace OnDeviceLlm.Runtime.Inference;

/// <summary>
/// One decoder-only transformer forward pass for every supported family, driven by <see cref="ModelConfig"/>.
/// Matrices stay where the model file mapped them; norms and biases are decoded to f32 once.
/// </summary>
public sealed class Transformer
{
    private sealed class Layer
    {
        public required ModelTensor Wq, Wk, Wv, Wo, WUp, WDown;
        public ModelTensor? WGate;
        public required float[] AttnNorm;
        public float[]? AttnNormBias, FfnNorm, FfnNormBias, PostAttnNorm, PostFfnNorm;
        public float[]? Bq, Bk, Bv, Bo, BUp, BDown;
        public float[]? QNorm, KNorm;
    }

    private readonly ModelConfig _c;
    private readonly IKernels _kernels;
    private readonly ModelTensor _embedding, _output;
    private readonly float[] _outputNorm;
    private readonly float[]? _outputNormBias, _outputBias;
    private readonly Layer[] _layers;
    private readonly float[] _invFreq;
    private readonly float[]? _alibiSlopes;
    /// <summary>
    /// Prompt-sized activation buffers, lent to one prefill at a time: a Gemma-2B chunk of 256 rows needs ~45 MB, which
    /// sessions kept between turns (the connector's prefix caches) would otherwise each hold on to while they decode.
    /// </summary>
    private readonly ConcurrentBag<ForwardScratch> _prefillScratch = [];

    public Transformer(ModelConfig config, ITensorSource weights, IKernels kernels)
    {
        _c = config;
        _kernels = kernels;
        ModelTensor Get(string name) => weights.Find(name) ?? throw new ModelFormatException("model", $"tensor {name} is missing.");
        float[]? Vector(string name) => weights.Find(name)?.ToFloat32();

        _embedding = Get(TokenEmbedding);
        _output = config.TiedEmbeddings ? _embedding : Get(Output);
        _outputNorm = Get(OutputNorm).ToFloat32();
        _outputNormBias = Vector(OutputNormBias);
        _outputBias = Vector(OutputBias);
        _layers = new Layer[config.NumLayers];
        for (int i = 0; i < config.NumLayers; i++)
        {
            string L(string n) => Layer(i, n);
            _layers[i] = new Layer
            {
                Wq = Get(L(AttnQ)), Wk = Get(L(AttnK)), Wv = Get(L(AttnV)), Wo = Get(L(AttnOutput)),
                WUp = Get(L(FfnUp)), WDown = Get(L(FfnDown)), WGate = weights.Find(L(FfnGate)),
                AttnNorm = Get(L(AttnNorm)).ToFloat32(), AttnNormBias = Vector(L(AttnNormBias)),
                FfnNorm = Vector(L(FfnNorm)), FfnNormBias = Vector(L(FfnNormBias)),
                PostAttnNorm = Vector(L(PostAttnNorm)), PostFfnNorm = Vector(L(PostFfnNorm)),
                Bq = Vector(L(AttnQBias)), Bk = Vector(L(AttnKBias)), Bv = Vector(L(AttnVBias)), Bo = Vector(L(AttnOutputBias)),
                BUp = Vector(L(FfnUpBias)), BDown = Vector(L(FfnDownBias)),
                QNorm = Vector(L(AttnQNorm)), KNorm = Vector(L(AttnKNorm)),
            };
        }

        // inv_freq as transformers computes it: 1 / θ^(2i / rotary_dim) in f32.
        _invFreq = new float[config.RotaryDim / 2];
        for (int i = 0; i < _invFreq.Length; i++)
            _invFreq[i] = (float)(1.0 / Math.Pow(config.RopeTheta, 2.0 * i / config.RotaryDim));
        if (config.Positions == PositionEncoding.Alibi)
        {
            // transformers' Falcon eager attention adds the ALiBi bias twice: once to q·k and once more through the
            // causal mask it builds with alibi / √head_dim folded in. The reference numbers come from that path, so the
            // slopes are doubled here; the fixtures match to 1e-5 with it and are off by 0.2 without.
            _alibiSlopes = MathOps.AlibiSlopes(config.NumHeads);
            for (int i = 0; i < _alibiSlopes.Length; i++) _alibiSlopes[i] *= 2f;
        }
    }

    public ModelConfig Config => _c;
    public IKernels Kernels => _kernels;

    /// <summary>
    /// Runs <paramref name="tokens"/> at positions cache.Length … and appends their keys and values to the cache.
    /// Writes the logits of the last position, or of every position when <paramref name="logits"/> holds tokens.Length rows.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, KvCache cache, ForwardScratch s, Span<float> logits)
    {
        int n = tokens.Length, h = _c.HiddenSize, d = _c.HeadDim, v = _c.VocabSize;
        int qDim = _c.NumHeads * d, kvDim = _c.NumKvHeads * d, f = _c.IntermediateSize;
        int pos0 = cache.Length;
        bool allPositions = logits.Length >= (long)n * v && n > 1;
        s.Ensure(n);

        // Token embeddings; Gemma scales them by √hidden (rounded to f32 first, as transformers does).
        var x = s.X.AsSpan(0, n * h);
        for (int t = 0; t < n; t++) _embedding.ReadRow(tokens[t], x.Slice(t * h, h));
        if (_c.ScaleEmbeddings) TensorPrimitives.Multiply(x, (float)Math.Sqrt(h), x);

        var xn = s.Normed.AsSpan(0, n * h);
        var q = s.Q.AsSpan(0, n * qDim);
        var k = s.K.AsSpan(0, n * kvDim);
        var val = s.V.AsSpan(0, n * kvDim);
        var att = s.Attention.AsSpan(0, n * qDim);
        var attOut = s.AttentionOut.AsSpan(0, n * h);
        var up = s.Up.AsSpan(0, n * f);
        var gate = s.Gate.AsSpan(0, n * f);
        var ffnOut = s.FfnOut.AsSpan(0, n * h);

        // One cos/sin table for the batch's positions serves every layer.
        bool rope = _c.Positions == PositionEncoding.Rope && _c.RotaryDim > 0;
        int half = _invFreq.Length;
        var cos = s.Cos.AsSpan(0, n * half);
        var sin = s.Sin.AsSpan(0, n * half);
        if (rope) _kernels.RopeTables(pos0, n, _invFreq, cos, sin);

        for (int l = 0; l < _layers.Length; l++)
        {
            var w = _layers[l];

            // Attention.
            NormRows(x, w.AttnNorm, w.AttnNormBias, xn, n);
            Linear(xn, n, w.Wq, w.Bq, q);
            Linear(xn, n, w.Wk, w.Bk, k);
            Linear(xn, n, w.Wv, w.Bv, val);
            if (w.QNorm is not null) HeadNorm(q, w.QNorm, n, _c.NumHeads);
            if (w.KNorm is not null) HeadNorm(k, w.KNorm, n, _c.NumKvHeads);
            if (rope)
            {
                _kernels.Rope(q, n, _c.NumHeads, d, _c.RotaryDim, cos, sin);
                _kernels.Rope(k, n, _c.NumKvHeads, d, _c.RotaryDim, cos, sin);
            }
            cache.Store(l, pos0, k, val);
            Attend(l, q, cache, pos0, n, att);
            Linear(att, n, w.Wo, w.Bo, attOut);

            // Feed-forward and residual, by block layout.
            switch (_c.Layout)
            {
                case BlockLayout.Sequential:
                    _kernels.Add(x, attOut, x);
                    NormRows(x, w.FfnNorm!, w.FfnNormBias, xn, n);
                    FeedForward(w, xn, n, up, gate, ffnOut);
                    _kernels.Add(x, ffnOut, x);
                    break;
                case BlockLayout.Parallel:
                    // One shared norm (Falcon-7B, Phi-2, StableLM parallel residual) or a separate MLP norm (Falcon-40B).
                    if (w.FfnNorm is not null) NormRows(x, w.FfnNorm, w.FfnNormBias, xn, n);
                    FeedForward(w, xn, n, up, gate, ffnOut);
                    _kernels.Add(ffnOut, attOut, ffnOut);
                    _kernels.Add(x, ffnOut, x);
                    break;
                case BlockLayout.Sandwich:
                    NormRows(attOut, w.PostAttnNorm!, null, attOut, n);
                    _kernels.Add(x, attOut, x);
                    NormRows(x, w.FfnNorm!, null, xn, n);
                    FeedForward(w, xn, n, up, gate, ffnOut);
                    NormRows(ffnOut, w.PostFfnNorm!, null, ffnOut, n);
                    _kernels.Add(x, ffnOut, x);
                    break;
            }
        }
        cache.Length = pos0 + n;

        // Final norm and output head, for every position or only the last.
        int first = allPositions ? 0 : n - 1, rows = n - first;
        var last = x.Slice(first * h, rows * h);
        NormRows(last, _outputNorm, _outputNormBias, xn, rows);
        var outLogits = logits[..(rows * v)];
        Linear(xn[..(rows * h)], rows, _output, _outputBias, outLogits);
        if (_c.FinalSoftcap > 0) _kernels.Softcap(outLogits, _c.FinalSoftcap, outLogits);
    }

    private void NormRows(ReadOnlySpan<float> x, float[] weight, float[]? bias, Span<float> y, int n)
    {
        int h = _c.HiddenSize;
        switch (_c.Norm)
        {
            case NormKind.RmsNorm: _kernels.RmsNorm(x, n, h, weight, 0f, _c.NormEps, y); break;
            case NormKind.RmsNormPlusOne: _kernels.RmsNorm(x, n, h, weight, 1f, _c.NormEps, y); break;
            default: _kernels.LayerNorm(x, n, h, weight, bias, _c.NormEps, y); break;
        }
    }

    /// <summary>Per-head LayerNorm without bias, one weight row per head (StableLM 2).</summary>
    private void HeadNorm(Span<float> x, float[] weight, int n, int heads) =>
        _kernels.LayerNorm(x, n * heads, _c.HeadDim, weight, default, _c.NormEps, x);

    private void Linear(ReadOnlySpan<float> x, int n, ModelTensor w, float[]? bias, Span<float> y)
    {
        _kernels.MatMul(x, n, w, y);
        if (bias is null) return;
        int outDim = w.Rows;
        for (int t = 0; t < n; t++) TensorPrimitives.Add(y.Slice(t * outDim, outDim), bias, y.Slice(t * outDim, outDim));
    }

    /// <summary>Activation buffers for a prefill, from the pool; give them back with <see cref="ReturnPrefillScratch"/>.</summary>
    internal ForwardScratch RentPrefillScratch() => _prefillScratch.TryTake(out var s) ? s : new ForwardScratch(_c);

    internal void ReturnPrefillScratch(ForwardScratch s) => _prefillScratch.Add(s);

    /// <summary>Prefill buffers waiting in the pool: one per prefill that ran at the same time as another.</summary>
    internal int PooledPrefillScratches => _prefillScratch.Count;

    /// <summary>The cache element type <see cref="KvCacheType.Auto"/> means for this model's weights.</summary>
    public KvCacheType DefaultKvCacheType => KvCache.Resolve(KvCacheType.Auto, _layers[0].Wq.Type);

    /// <summary>Causal attention of n queries at positions pos0… over the cache, sliding window and ALiBi aware.</summary>
    private void Attend(int layer, ReadOnlySpan<float> q, KvCache cache, int pos0, int n, Span<float> output)
    {
        var shape = new AttentionShape
        {
            Queries = n, Position0 = pos0, Heads = _c.NumHeads, KvHeads = _c.NumKvHeads, HeadDim = _c.HeadDim,
            Scale = _c.AttentionScale, Softcap = Math.Max(0f, _c.AttentionSoftcap),
            Window = _c.IsSlidingLayer(layer) ? _c.SlidingWindow : 0, AlibiSlopes = _alibiSlopes,
        };
        int used = (pos0 + n) * _c.NumKvHeads * _c.HeadDim;
        if (cache.ElementType == KvCacheType.F16)
            _kernels.Attention(shape, q, cache.HalfKeys(layer)[..used], cache.HalfValues(layer)[..used], output);
        else
            _kernels.Attention(shape, q, cache.Keys(layer)[..used], cache.Values(layer)[..used], output);
    }

    private void FeedForward(Layer w, ReadOnlySpan<float> x, int n, Span<float> up, Span<float> gate, Span<float> output)
    {
        var activation = _c.Activation;
        Linear(x, n, w.WUp, w.BUp, up);
        if (w.WGate is not null)
        {
            Linear(x, n, w.WGate, null, gate);
            _kernels.GatedActivate(activation, gate, up, up);
        }
        else
        {
            _kernels.Activate(activation, up, up);
        }
        Linear(up, n, w.WDown, w.BDown, output);
    }
}

/// <summary>Reusable activation buffers of one session, grown to the largest batch seen.</summary>
public sealed class ForwardScratch
{
    private readonly ModelConfig _c;

    public ForwardScratch(ModelConfig config) => _c = config;

    public int Rows { get; private set; }
    public float[] X = [], Normed = [], Q = [], K = [], V = [], Attention = [], AttentionOut = [], Up = [], Gate = [], FfnOut = [];
    /// <summary>RoPE's cos/sin of every row's position: rows × RotaryDim/2.</summary>
    public float[] Cos = [], Sin = [];

    public void Ensure(int rows)
    {
        if (rows <= Rows) return;
        int h = _c.HiddenSize, q = _c.NumHeads * _c.HeadDim, kv = _c.NumKvHeads * _c.HeadDim, f = _c.IntermediateSize;
        X = new float[rows * h]; Normed = new float[rows * h]; AttentionOut = new float[rows * h]; FfnOut = new float[rows * h];
        Q = new float[rows * q]; Attention = new float[rows * q];
        K = new float[rows * kv]; V = new float[rows * kv];
        Up = new float[rows * f]; Gate = new float[rows * f];
        Cos = new float[rows * (_c.RotaryDim / 2)]; Sin = new float[rows * (_c.RotaryDim / 2)];
        Rows = rows;
    }
}

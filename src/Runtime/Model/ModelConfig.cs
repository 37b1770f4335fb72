namespace OnDeviceLlm.Runtime.Model;

public enum NormKind : byte
{
    /// <summary>x · rsqrt(mean(x²) + eps) · w (Llama).</summary>
    RmsNorm = 0,
    /// <summary>x · rsqrt(mean(x²) + eps) · (1 + w) (Gemma, Gemma 2).</summary>
    RmsNormPlusOne = 1,
    /// <summary>(x − mean) · rsqrt(var + eps) · w + b, bias optional (Phi, Falcon, StableLM).</summary>
    LayerNorm = 2,
}

public enum Activation : byte
{
    Silu = 0,
    /// <summary>tanh approximation (gelu_pytorch_tanh, gelu_new).</summary>
    GeluTanh = 1,
    /// <summary>exact erf GELU.</summary>
    GeluErf = 2,
}

public enum FeedForwardKind : byte
{
    /// <summary>down(act(gate(x)) · up(x)).</summary>
    Gated = 0,
    /// <summary>down(act(up(x))).</summary>
    Plain = 1,
}

public enum BlockLayout : byte
{
    /// <summary>h = x + attn(attn_norm(x)); out = h + ffn(ffn_norm(h)).</summary>
    Sequential = 0,
    /// <summary>out = x + attn(attn_norm(x)) + ffn(ffn_norm(x)), ffn_norm falling back to attn_norm when absent.</summary>
    Parallel = 1,
    /// <summary>Gemma 2: h = x + post_attn_norm(attn(attn_norm(x))); out = h + post_ffn_norm(ffn(ffn_norm(h))).</summary>
    Sandwich = 2,
}

public enum PositionEncoding : byte
{
    /// <summary>Rotary, rotate-half (NeoX) convention on the first RotaryDim dims of each head.</summary>
    Rope = 0,
    /// <summary>ALiBi: slope_h · key_position added to the raw q·k before scaling (Falcon/BLOOM).</summary>
    Alibi = 1,
}

/// <summary>
/// Everything the forward pass needs to know about a model, independent of where it came from.
/// Architectures differ only through these fields (see Architectures/).
/// </summary>
public sealed record ModelConfig
{
    /// <summary>Family name: llama, gemma, gemma2, phi2, falcon, stablelm.</summary>
    public required string Architecture { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int IntermediateSize { get; init; }
    /// <summary>Longest sequence (prompt + generated) the model accepts.</summary>
    public required int ContextLength { get; init; }

    public NormKind Norm { get; init; }
    public float NormEps { get; init; } = 1e-5f;
    public Activation Activation { get; init; }
    public FeedForwardKind FeedForward { get; init; }
    public BlockLayout Layout { get; init; }
    public PositionEncoding Positions { get; init; }
    /// <summary>Rotary dims per head (≤ HeadDim, even); the rest pass through.</summary>
    public int RotaryDim { get; init; }
    public float RopeTheta { get; init; } = 10000f;

    /// <summary>Multiply token embeddings by √HiddenSize (Gemma).</summary>
    public bool ScaleEmbeddings { get; init; }
    /// <summary>Multiplier of q·k; usually HeadDim^-0.5 (Gemma 2: query_pre_attn_scalar^-0.5).</summary>
    public float AttentionScale { get; init; }
    /// <summary>cap·tanh(s/cap) on attention scores; 0 = off.</summary>
    public float AttentionSoftcap { get; init; }
    /// <summary>cap·tanh(z/cap) on final logits; 0 = off.</summary>
    public float FinalSoftcap { get; init; }
    /// <summary>Keys visible to a sliding layer: q − window &lt; k ≤ q; 0 = no sliding layers.</summary>
    public int SlidingWindow { get; init; }
    /// <summary>Per layer: true when it uses the sliding window. Empty = none.</summary>
    public IReadOnlyList<bool> SlidingLayers { get; init; } = [];
    /// <summary>Per-head LayerNorm (no bias) on q and k before RoPE (StableLM 2 12B).</summary>
    public bool QkNorm { get; init; }
    /// <summary>Output head shares the token embedding matrix.</summary>
    public bool TiedEmbeddings { get; init; }

    public bool IsSlidingLayer(int layer) => SlidingWindow > 0 && layer < SlidingLayers.Count && SlidingLayers[layer];
}

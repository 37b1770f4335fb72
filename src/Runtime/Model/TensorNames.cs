namespace OnDeviceLlm.Runtime.Model;

/// <summary>
/// The canonical tensor names of a model file (llama.cpp's GGUF names, so GGUF import is a rename)
/// and the shape each must have for a given config.
/// </summary>
public static class TensorNames
{
    public const string TokenEmbedding = "token_embd.weight";
    public const string OutputNorm = "output_norm.weight";
    public const string OutputNormBias = "output_norm.bias";
    public const string Output = "output.weight";
    public const string OutputBias = "output.bias";

    public static string Layer(int layer, string name) => $"blk.{layer}.{name}";

    // Per-layer suffixes.
    public const string AttnNorm = "attn_norm.weight";
    public const string AttnNormBias = "attn_norm.bias";
    public const string AttnQ = "attn_q.weight";
    public const string AttnQBias = "attn_q.bias";
    public const string AttnK = "attn_k.weight";
    public const string AttnKBias = "attn_k.bias";
    public const string AttnV = "attn_v.weight";
    public const string AttnVBias = "attn_v.bias";
    public const string AttnOutput = "attn_output.weight";
    public const string AttnOutputBias = "attn_output.bias";
    /// <summary>[heads, head_dim]: one LayerNorm weight per query head.</summary>
    public const string AttnQNorm = "attn_q_norm.weight";
    /// <summary>[kv_heads, head_dim]: one LayerNorm weight per key head.</summary>
    public const string AttnKNorm = "attn_k_norm.weight";
    public const string PostAttnNorm = "post_attention_norm.weight";
    public const string FfnNorm = "ffn_norm.weight";
    public const string FfnNormBias = "ffn_norm.bias";
    public const string FfnGate = "ffn_gate.weight";
    public const string FfnUp = "ffn_up.weight";
    public const string FfnUpBias = "ffn_up.bias";
    public const string FfnDown = "ffn_down.weight";
    public const string FfnDownBias = "ffn_down.bias";
    public const string PostFfnNorm = "post_ffw_norm.weight";

    /// <summary>Every tensor name a model of this config may hold, its required shape, and whether it must be present.</summary>
    public static IEnumerable<(string Name, long[] Shape, bool Required)> Expected(ModelConfig c)
    {
        long v = c.VocabSize, h = c.HiddenSize, q = (long)c.NumHeads * c.HeadDim, kv = (long)c.NumKvHeads * c.HeadDim, f = c.IntermediateSize;

        yield return (TokenEmbedding, [v, h], true);
        yield return (OutputNorm, [h], true);
        yield return (OutputNormBias, [h], false);
        yield return (Output, [v, h], !c.TiedEmbeddings);
        yield return (OutputBias, [v], false);

        for (int i = 0; i < c.NumLayers; i++)
        {
            yield return (Layer(i, AttnNorm), [h], true);
            yield return (Layer(i, AttnNormBias), [h], false);
            yield return (Layer(i, AttnQ), [q, h], true);
            yield return (Layer(i, AttnQBias), [q], false);
            yield return (Layer(i, AttnK), [kv, h], true);
            yield return (Layer(i, AttnKBias), [kv], false);
            yield return (Layer(i, AttnV), [kv, h], true);
            yield return (Layer(i, AttnVBias), [kv], false);
            yield return (Layer(i, AttnOutput), [h, q], true);
            yield return (Layer(i, AttnOutputBias), [h], false);
            yield return (Layer(i, AttnQNorm), [c.NumHeads, c.HeadDim], c.QkNorm);
            yield return (Layer(i, AttnKNorm), [c.NumKvHeads, c.HeadDim], c.QkNorm);
            yield return (Layer(i, PostAttnNorm), [h], c.Layout == BlockLayout.Sandwich);
            // Parallel blocks may share attn_norm (Falcon-7B, Phi-2, StableLM parallel residual).
            yield return (Layer(i, FfnNorm), [h], c.Layout != BlockLayout.Parallel);
            yield return (Layer(i, FfnNormBias), [h], false);
            yield return (Layer(i, FfnGate), [f, h], c.FeedForward == FeedForwardKind.Gated);
            yield return (Layer(i, FfnUp), [f, h], true);
            yield return (Layer(i, FfnUpBias), [f], false);
            yield return (Layer(i, FfnDown), [h, f], true);
            yield return (Layer(i, FfnDownBias), [h], false);
            yield return (Layer(i, PostFfnNorm), [h], c.Layout == BlockLayout.Sandwich);
        }
    }
}

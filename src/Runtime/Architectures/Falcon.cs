using OnDeviceLlm.Runtime.Import.HuggingFace;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Architectures;

/// <summary>
/// Falcon (FalconForCausalLM; https://huggingface.co/tiiuae/falcon-7b, falcon-40b, falcon-rw-1b), three layouts:
/// 7B: multi-query attention, attention and MLP in parallel from one LayerNorm;
/// 40B ("new decoder architecture"): grouped KV heads, separate ln_attn/ln_mlp, parallel;
/// RW: ALiBi instead of RoPE, full multi-head attention, sequential residual, biases.
/// The fused query_key_value matrix is split into q, k and v at import (its row order differs per layout).
/// Exact (erf) GELU; LayerNorm with bias; output head tied to the embeddings.
/// </summary>
public sealed class Falcon : Architecture
{
    public override string Name => "falcon";
    public override IReadOnlyList<string> ModelTypes => ["falcon", "RefinedWeb", "RefinedWebModel"];

    public override ModelConfig ReadConfig(HfConfig hf)
    {
        int hidden = hf.Int("hidden_size");
        int heads = hf.Int("num_attention_heads", null) ?? hf.Int("n_head");
        int headDim = hidden / heads;
        bool newArch = hf.Bool("new_decoder_architecture", false);
        bool alibi = hf.Bool("alibi", false);
        // num_kv_heads counts only for the new architecture; otherwise multi_query decides.
        int kvHeads = newArch ? hf.Int("num_kv_heads", null) ?? heads : hf.Bool("multi_query", true) ? 1 : heads;
        bool parallel = newArch || hf.Bool("parallel_attn", true);
        if (!alibi) hf.RequireDefaultRope();
        return new ModelConfig
        {
            Architecture = Name,
            VocabSize = hf.Int("vocab_size"),
            HiddenSize = hidden,
            NumLayers = hf.Int("num_hidden_layers", null) ?? hf.Int("n_layer"),
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            IntermediateSize = hf.Int("ffn_hidden_size", null) ?? 4 * hidden,
            ContextLength = hf.Int("max_position_embeddings", 2048)!.Value,
            Norm = NormKind.LayerNorm,
            NormEps = hf.Float("layer_norm_epsilon", 1e-5f)!.Value,
            Activation = ParseActivation(hf, "activation", hf.String("activation") ?? "gelu"),
            FeedForward = FeedForwardKind.Plain,
            Layout = parallel ? BlockLayout.Parallel : BlockLayout.Sequential,
            Positions = alibi ? PositionEncoding.Alibi : PositionEncoding.Rope,
            RotaryDim = alibi ? 0 : headDim,
            RopeTheta = hf.RopeTheta(),
            AttentionScale = 1f / MathF.Sqrt(headDim),
            TiedEmbeddings = hf.Bool("tie_word_embeddings", true),
        };
    }

    public override IEnumerable<TensorMapping> MapTensors(ModelConfig c, Func<string, bool> has)
    {
        foreach (var m in EmbeddingAndHead(has, "transformer.word_embeddings", "transformer.ln_f")) yield return m;
        for (int i = 0; i < c.NumLayers; i++)
        {
            string p = $"transformer.h.{i}.", b = $"blk.{i}.";
            var layer = Linear(has, b + "attn_norm", p + "input_layernorm")
                .Concat(Linear(has, b + "attn_norm", p + "ln_attn"))
                .Concat(Linear(has, b + "ffn_norm", p + "ln_mlp"))
                .Concat(Linear(has, b + "ffn_norm", p + "post_attention_layernorm"))
                .Concat(Linear(has, b + "attn_output", p + "self_attention.dense"))
                .Concat(Linear(has, b + "ffn_up", p + "mlp.dense_h_to_4h"))
                .Concat(Linear(has, b + "ffn_down", p + "mlp.dense_4h_to_h"));
            foreach (var m in layer) yield return m;
            foreach (var suffix in new[] { "weight", "bias" })
            {
                string fused = p + "self_attention.query_key_value." + suffix;
                if (!has(fused)) continue;
                var (q, k, v) = SplitQkv(c, fused);
                yield return new TensorMapping(b + "attn_q." + suffix, q);
                yield return new TensorMapping(b + "attn_k." + suffix, k);
                yield return new TensorMapping(b + "attn_v." + suffix, v);
            }
        }
    }

    /// <summary>Row slices of the fused matrix holding q, k and v, following transformers' FalconAttention._split_heads.</summary>
    private static (RowSlice[] Q, RowSlice[] K, RowSlice[] V) SplitQkv(ModelConfig c, string fused)
    {
        int d = c.HeadDim, h = c.NumHeads, kv = c.NumKvHeads;
        if (kv == 1)
        {
            // Multi-query: [q_0 … q_{H-1}, k, v].
            return ([new(fused, 0, (long)h * d)], [new(fused, (long)h * d, d)], [new(fused, (long)(h + 1) * d, d)]);
        }
        if (kv == h)
        {
            // Multi-head (RW): interleaved per head as view(H, 3, head_dim).
            var q = new RowSlice[h]; var k = new RowSlice[h]; var v = new RowSlice[h];
            for (int i = 0; i < h; i++)
            {
                long start = (long)i * 3 * d;
                q[i] = new(fused, start, d); k[i] = new(fused, start + d, d); v[i] = new(fused, start + 2 * d, d);
            }
            return (q, k, v);
        }
        // Grouped (new decoder architecture): per KV group g, [q_{g,0} … q_{g,r-1}, k_g, v_g].
        int r = h / kv;
        var qs = new RowSlice[kv]; var ks = new RowSlice[kv]; var vs = new RowSlice[kv];
        for (int g = 0; g < kv; g++)
        {
            long start = (long)g * (r + 2) * d;
            qs[g] = new(fused, start, (long)r * d); ks[g] = new(fused, start + (long)r * d, d); vs[g] = new(fused, start + (long)(r + 1) * d, d);
        }
        return (qs, ks, vs);
    }
}

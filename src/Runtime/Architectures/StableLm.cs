using OnDeviceLlm.Runtime.Import.HuggingFace;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Architectures;

/// <summary>
/// StableLM (StableLmForCausalLM; https://huggingface.co/stabilityai/stablelm-3b-4e1t,
/// https://huggingface.co/stabilityai/stablelm-2-1_6b): LayerNorm with bias, partial rotary (25%), SwiGLU.
/// StableLM 2 adds optional q/k/v biases, per-head q/k LayerNorms (12B) and a parallel residual
/// x + attn(ln(x)) + mlp(ln(x)) with a single norm.
/// </summary>
public sealed class StableLm : Architecture
{
    public override string Name => "stablelm";
    public override IReadOnlyList<string> ModelTypes => ["stablelm", "stablelm_epoch"];

    public override ModelConfig ReadConfig(HfConfig hf)
    {
        var c = ReadCommon(hf, defaultContextLength: 4096, readHeadDim: false);
        return c with
        {
            Norm = NormKind.LayerNorm,
            NormEps = hf.Float("layer_norm_eps", 1e-5f)!.Value,
            Activation = ParseActivation(hf, "hidden_act", hf.String("hidden_act") ?? "silu"),
            FeedForward = FeedForwardKind.Gated,
            Layout = hf.Bool("use_parallel_residual", false) ? BlockLayout.Parallel : BlockLayout.Sequential,
            RotaryDim = (int)(c.HeadDim * hf.PartialRotaryFactor(0.25f)),
            QkNorm = hf.Bool("qk_layernorm", false),
            TiedEmbeddings = hf.Bool("tie_word_embeddings", false),
        };
    }

    public override IEnumerable<TensorMapping> MapTensors(ModelConfig c, Func<string, bool> has) =>
        EmbeddingAndHead(has, "model.embed_tokens", "model.norm")
            .Concat(Enumerable.Range(0, c.NumLayers).SelectMany(i =>
            {
                var layer = Llama.DecoderLayer(has, i);
                if (!c.QkNorm) return layer;
                // transformers keeps one LayerNorm module per head; the model file stacks them into [heads, head_dim].
                string p = $"model.layers.{i}.self_attn.";
                return layer
                    .Append(Stack($"blk.{i}.attn_q_norm.weight", p + "q_layernorm.norms.{0}.weight", c.NumHeads))
                    .Append(Stack($"blk.{i}.attn_k_norm.weight", p + "k_layernorm.norms.{0}.weight", c.NumKvHeads));
            }));

    private static TensorMapping Stack(string name, string sourceFormat, int count) =>
        new(name, Enumerable.Range(0, count).Select(h => RowSlice.All(string.Format(sourceFormat, h))).ToArray());
}

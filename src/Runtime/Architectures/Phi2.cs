using OnDeviceLlm.Runtime.Import.HuggingFace;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Architectures;

/// <summary>
/// Phi-2 (PhiForCausalLM; https://huggingface.co/microsoft/phi-2): one LayerNorm feeding attention and MLP
/// in parallel, partial rotary (partial_rotary_factor of each head), gelu_new MLP, biases everywhere
/// including the output head.
/// </summary>
public sealed class Phi2 : Architecture
{
    public override string Name => "phi2";
    public override IReadOnlyList<string> ModelTypes => ["phi"];

    public override ModelConfig ReadConfig(HfConfig hf)
    {
        // Phi's qk_layernorm is one affine LayerNorm shared by all heads, unlike StableLM's per-head one.
        hf.Reject("qk_layernorm", n => n.GetValue<bool>(), "no released Phi checkpoint uses it");
        var c = ReadCommon(hf, defaultContextLength: 2048, readHeadDim: false);
        return c with
        {
            Norm = NormKind.LayerNorm,
            NormEps = hf.Float("layer_norm_eps", 1e-5f)!.Value,
            Activation = ParseActivation(hf, "hidden_act", hf.String("hidden_act") ?? "gelu_new"),
            FeedForward = FeedForwardKind.Plain,
            Layout = BlockLayout.Parallel,
            RotaryDim = (int)(c.HeadDim * hf.PartialRotaryFactor(0.5f)),
            TiedEmbeddings = hf.Bool("tie_word_embeddings", false),
        };
    }

    public override IEnumerable<TensorMapping> MapTensors(ModelConfig c, Func<string, bool> has) =>
        EmbeddingAndHead(has, "model.embed_tokens", "model.final_layernorm")
            .Concat(Enumerable.Range(0, c.NumLayers).SelectMany(i =>
            {
                string p = $"model.layers.{i}.", b = $"blk.{i}.";
                return Linear(has, b + "attn_norm", p + "input_layernorm")
                    .Concat(Linear(has, b + "attn_q", p + "self_attn.q_proj"))
                    .Concat(Linear(has, b + "attn_k", p + "self_attn.k_proj"))
                    .Concat(Linear(has, b + "attn_v", p + "self_attn.v_proj"))
                    .Concat(Linear(has, b + "attn_output", p + "self_attn.dense"))
                    .Concat(Linear(has, b + "ffn_up", p + "mlp.fc1"))
                    .Concat(Linear(has, b + "ffn_down", p + "mlp.fc2"));
            }));
}

using OnDeviceLlm.Runtime.Import.HuggingFace;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Architectures;

/// <summary>
/// Llama (LlamaForCausalLM; https://huggingface.co/docs/transformers/model_doc/llama): RMSNorm, SwiGLU,
/// grouped-query attention, full RoPE; optional attention/MLP biases. The shape of most community fine-tunes.
/// </summary>
public sealed class Llama : Architecture
{
    public override string Name => "llama";
    public override IReadOnlyList<string> ModelTypes => ["llama"];

    public override ModelConfig ReadConfig(HfConfig hf) => ReadCommon(hf, defaultContextLength: 2048) with
    {
        Norm = NormKind.RmsNorm,
        NormEps = hf.Float("rms_norm_eps", 1e-6f)!.Value,
        Activation = ParseActivation(hf, "hidden_act", hf.String("hidden_act") ?? "silu"),
        FeedForward = FeedForwardKind.Gated,
        Layout = BlockLayout.Sequential,
        TiedEmbeddings = hf.Bool("tie_word_embeddings", false),
    };

    public override IEnumerable<TensorMapping> MapTensors(ModelConfig c, Func<string, bool> has) =>
        EmbeddingAndHead(has, "model.embed_tokens", "model.norm")
            .Concat(Enumerable.Range(0, c.NumLayers).SelectMany(i => DecoderLayer(has, i)));

    /// <summary>The Llama-style decoder layer naming, shared by Gemma, Gemma 2 and StableLM.</summary>
    internal static IEnumerable<TensorMapping> DecoderLayer(Func<string, bool> has, int i, string postAttentionNorm = "ffn_norm")
    {
        string p = $"model.layers.{i}.", b = $"blk.{i}.";
        return Linear(has, b + "attn_norm", p + "input_layernorm")
            .Concat(Linear(has, b + "attn_q", p + "self_attn.q_proj"))
            .Concat(Linear(has, b + "attn_k", p + "self_attn.k_proj"))
            .Concat(Linear(has, b + "attn_v", p + "self_attn.v_proj"))
            .Concat(Linear(has, b + "attn_output", p + "self_attn.o_proj"))
            .Concat(Linear(has, b + postAttentionNorm, p + "post_attention_layernorm"))
            .Concat(Linear(has, b + "ffn_gate", p + "mlp.gate_proj"))
            .Concat(Linear(has, b + "ffn_up", p + "mlp.up_proj"))
            .Concat(Linear(has, b + "ffn_down", p + "mlp.down_proj"));
    }
}

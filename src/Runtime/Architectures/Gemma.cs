using OnDeviceLlm.Runtime.Import.HuggingFace;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Architectures;

/// <summary>
/// Gemma (GemmaForCausalLM; https://huggingface.co/google/gemma-2b): Llama's block with RMSNorm scaled by (1 + w),
/// GeGLU with tanh-approximate GELU, multi-query attention, head_dim independent of hidden/heads,
/// embeddings multiplied by √hidden, output head tied to the embeddings.
/// </summary>
public sealed class Gemma : Architecture
{
    public override string Name => "gemma";
    public override IReadOnlyList<string> ModelTypes => ["gemma"];

    public override ModelConfig ReadConfig(HfConfig hf) => ReadGemmaConfig(hf, this);

    /// <summary>What Gemma and Gemma 2 share.</summary>
    internal static ModelConfig ReadGemmaConfig(HfConfig hf, Architecture family)
    {
        // hidden_activation wins when present (Gemma 2). The original Gemma configs say "hidden_act": "gelu", but
        // those checkpoints were trained with the tanh approximation, which transformers substitutes.
        string key = hf.String("hidden_activation") is null ? "hidden_act" : "hidden_activation";
        string? activation = hf.String(key) is "gelu" && key == "hidden_act" ? "gelu_pytorch_tanh" : hf.String(key);
        return family.ReadCommon(hf, defaultContextLength: 8192) with
        {
            Norm = NormKind.RmsNormPlusOne,
            NormEps = hf.Float("rms_norm_eps", 1e-6f)!.Value,
            Activation = ParseActivation(hf, key, activation ?? "gelu_pytorch_tanh"),
            FeedForward = FeedForwardKind.Gated,
            Layout = BlockLayout.Sequential,
            ScaleEmbeddings = true,
            TiedEmbeddings = hf.Bool("tie_word_embeddings", true),
        };
    }

    public override IEnumerable<TensorMapping> MapTensors(ModelConfig c, Func<string, bool> has) =>
        EmbeddingAndHead(has, "model.embed_tokens", "model.norm")
            .Concat(Enumerable.Range(0, c.NumLayers).SelectMany(i => Llama.DecoderLayer(has, i)));
}

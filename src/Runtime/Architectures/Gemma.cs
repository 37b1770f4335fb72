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

    public override ModelConfig ReadConfig(HfConfig hf) => ReadGemmaConfig(hf, Name);

    /// <summary>What Gemma and Gemma 2 share.</summary>
    internal static ModelConfig ReadGemmaConfig(HfConfig hf, string name)
    {
        hf.RequireDefaultRope();
        int hidden = hf.Int("hidden_size"), heads = hf.Int("num_attention_heads");
        int headDim = hf.Int("head_dim", null) ?? hidden / heads;
        // The original Gemma configs say "hidden_act": "gelu" but the checkpoints were trained with the tanh
        // approximation; transformers uses hidden_activation when set and gelu_pytorch_tanh otherwise.
        string act = hf.String("hidden_activation") ?? "gelu_pytorch_tanh";
        string actKey = hf.String("hidden_activation") is null ? "hidden_act" : "hidden_activation";
        return new ModelConfig
        {
            Architecture = name,
            VocabSize = hf.Int("vocab_size"),
            HiddenSize = hidden,
            NumLayers = hf.Int("num_hidden_layers"),
            NumHeads = heads,
            NumKvHeads = hf.Int("num_key_value_heads", null) ?? heads,
            HeadDim = headDim,
            IntermediateSize = hf.Int("intermediate_size"),
            ContextLength = hf.Int("max_position_embeddings", 8192)!.Value,
            Norm = NormKind.RmsNormPlusOne,
            NormEps = hf.Float("rms_norm_eps", 1e-6f)!.Value,
            Activation = ParseActivation(hf, actKey, act),
            FeedForward = FeedForwardKind.Gated,
            Layout = BlockLayout.Sequential,
            Positions = PositionEncoding.Rope,
            RotaryDim = headDim,
            RopeTheta = hf.RopeTheta(),
            ScaleEmbeddings = true,
            AttentionScale = 1f / MathF.Sqrt(headDim),
            TiedEmbeddings = hf.Bool("tie_word_embeddings", true),
        };
    }

    public override IEnumerable<TensorMapping> MapTensors(ModelConfig c, Func<string, bool> has) =>
        EmbeddingAndHead(has, "model.embed_tokens", "model.norm")
            .Concat(Enumerable.Range(0, c.NumLayers).SelectMany(i => Llama.DecoderLayer(has, i)));
}

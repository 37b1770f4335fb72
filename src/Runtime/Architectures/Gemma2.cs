using OnDeviceLlm.Runtime.Import.HuggingFace;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Architectures;

/// <summary>
/// Gemma 2 (Gemma2ForCausalLM; https://huggingface.co/google/gemma-2-2b): Gemma plus sandwich norms
/// (pre/post attention, pre/post feed-forward), tanh soft-capping of attention scores and final logits,
/// attention scale query_pre_attn_scalar^-0.5, and sliding-window attention on alternate layers.
/// </summary>
public sealed class Gemma2 : Architecture
{
    public override string Name => "gemma2";
    public override IReadOnlyList<string> ModelTypes => ["gemma2"];

    public override ModelConfig ReadConfig(HfConfig hf)
    {
        var c = Gemma.ReadGemmaConfig(hf, this);
        int layers = c.NumLayers;
        // transformers 5.x lists layer_types; 4.x slid every even layer.
        var types = hf.StringList("layer_types");
        if (types is not null && types.Count != layers)
            throw new ModelFormatException(hf.Path, $"layer_types has {types.Count} entries for {layers} layers.");
        var sliding = types?.Select(t => t switch
            {
                "sliding_attention" => true,
                "full_attention" => false,
                _ => throw new UnsupportedModelException($"{hf.Path}: layer type \"{t}\" is not supported."),
            }).ToArray()
            ?? Enumerable.Range(0, layers).Select(i => i % 2 == 0).ToArray();
        int window = hf.Int("sliding_window", null) ?? 0;
        return c with
        {
            Layout = BlockLayout.Sandwich,
            AttentionScale = 1f / MathF.Sqrt(hf.Float("query_pre_attn_scalar", c.HeadDim)!.Value),
            AttentionSoftcap = hf.Float("attn_logit_softcapping", null) ?? 0f,
            FinalSoftcap = hf.Float("final_logit_softcapping", null) ?? 0f,
            SlidingWindow = window,
            SlidingLayers = window > 0 ? sliding : [],
        };
    }

    public override IEnumerable<TensorMapping> MapTensors(ModelConfig c, Func<string, bool> has) =>
        EmbeddingAndHead(has, "model.embed_tokens", "model.norm")
            .Concat(Enumerable.Range(0, c.NumLayers).SelectMany(i =>
                Llama.DecoderLayer(has, i, postAttentionNorm: "post_attention_norm")
                    .Concat(IfPresent(has, $"blk.{i}.ffn_norm.weight", $"model.layers.{i}.pre_feedforward_layernorm.weight"))
                    .Concat(IfPresent(has, $"blk.{i}.post_ffw_norm.weight", $"model.layers.{i}.post_feedforward_layernorm.weight"))));
}

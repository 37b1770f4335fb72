namespace OnDeviceLlm.Runtime.Model;

/// <summary>DESIGN.md's benchmark shapes, for random-weight models on the CPU and the GPU alike.</summary>
public static class SyntheticShapes
{
    /// <summary>Gemma-2B: vocab 256000, hidden 2048, 18 layers, 8 heads, 1 KV head, head_dim 256, FFN 16384.</summary>
    public static ModelConfig Gemma2B => new()
    {
        Architecture = "gemma", VocabSize = 256000, HiddenSize = 2048, NumLayers = 18, NumHeads = 8, NumKvHeads = 1,
        HeadDim = 256, IntermediateSize = 16384, ContextLength = 8192, Norm = NormKind.RmsNormPlusOne, NormEps = 1e-6f,
        Activation = Activation.GeluTanh, FeedForward = FeedForwardKind.Gated, Layout = BlockLayout.Sequential,
        Positions = PositionEncoding.Rope, RotaryDim = 256, RopeTheta = 10000f, ScaleEmbeddings = true,
        AttentionScale = 1f / 16, TiedEmbeddings = true,
    };

    /// <summary>llama2.c's 110M shape: vocab 32000, hidden 768, 12 layers, 12 heads, FFN 2048, untied output head.</summary>
    public static ModelConfig Llama110M => new()
    {
        Architecture = "llama", VocabSize = 32000, HiddenSize = 768, NumLayers = 12, NumHeads = 12, NumKvHeads = 12,
        HeadDim = 64, IntermediateSize = 2048, ContextLength = 2048, Norm = NormKind.RmsNorm, NormEps = 1e-5f,
        Activation = Activation.Silu, FeedForward = FeedForwardKind.Gated, Layout = BlockLayout.Sequential,
        Positions = PositionEncoding.Rope, RotaryDim = 64, RopeTheta = 10000f, AttentionScale = 0.125f,
    };

    /// <summary>A shape by its benchmark name.</summary>
    public static ModelConfig ByName(string name) => name switch
    {
        "gemma-2b" => Gemma2B,
        "llama-110m" => Llama110M,
        _ => throw new ArgumentException($"Unknown synthetic shape \"{name}\"; known: gemma-2b, llama-110m."),
    };
}

using OnDeviceLlm.Runtime.Import.HuggingFace;
using OnDeviceLlm.Runtime.Model;
using static OnDeviceLlm.Runtime.Model.TensorNames;

namespace OnDeviceLlm.Runtime.Architectures;

/// <summary>Rows [Start, Start + Count) of a checkpoint tensor; a row is everything after dim 0 (one element of a vector).</summary>
public readonly record struct RowSlice(string Source, long Start, long Count)
{
    public static RowSlice All(string source) => new(source, 0, -1);
}

/// <summary>One canonical tensor of the model file, assembled from slices of checkpoint tensors in order.</summary>
public sealed record TensorMapping(string Name, IReadOnlyList<RowSlice> Pieces);

/// <summary>
/// A model family: how its Hugging Face config maps onto <see cref="ModelConfig"/> and its tensor
/// names onto the canonical ones. The forward pass itself is shared (Inference/Transformer.cs).
/// </summary>
public abstract class Architecture
{
    /// <summary>Our family name, stored in the model file.</summary>
    public abstract string Name { get; }

    /// <summary>Hugging Face <c>model_type</c> values this family reads.</summary>
    public abstract IReadOnlyList<string> ModelTypes { get; }

    public abstract ModelConfig ReadConfig(HfConfig hf);

    /// <summary>Canonical tensors from checkpoint tensors; <paramref name="has"/> tells which checkpoint names exist.</summary>
    public abstract IEnumerable<TensorMapping> MapTensors(ModelConfig config, Func<string, bool> has);

    /// <summary>
    /// The keys transformers decoder configs share (hidden_size, num_attention_heads, …), RoPE over whole heads and a
    /// head_dim^-0.5 attention scale. Each family adds what differs with a <c>with</c> expression.
    /// </summary>
    protected internal ModelConfig ReadCommon(HfConfig hf, int defaultContextLength, bool readHeadDim = true)
    {
        hf.RequireDefaultRope();
        int hidden = hf.Int("hidden_size"), heads = hf.Int("num_attention_heads");
        int headDim = (readHeadDim ? hf.Int("head_dim", null) : null) ?? hidden / heads;
        return new ModelConfig
        {
            Architecture = Name,
            VocabSize = hf.Int("vocab_size"),
            HiddenSize = hidden,
            NumLayers = hf.Int("num_hidden_layers"),
            NumHeads = heads,
            NumKvHeads = hf.Int("num_key_value_heads", null) ?? heads,
            HeadDim = headDim,
            IntermediateSize = hf.Int("intermediate_size"),
            ContextLength = hf.Int("max_position_embeddings", defaultContextLength)!.Value,
            Positions = PositionEncoding.Rope,
            RotaryDim = headDim,
            RopeTheta = hf.RopeTheta(),
            AttentionScale = 1f / MathF.Sqrt(headDim),
        };
    }

    /// <summary>Maps a checkpoint tensor when it exists (biases and other optional tensors).</summary>
    protected static IEnumerable<TensorMapping> IfPresent(Func<string, bool> has, string name, string source)
    {
        if (has(source)) yield return new TensorMapping(name, [RowSlice.All(source)]);
    }

    /// <summary>Maps <c>{prefix}{source}.weight/.bias</c> to <c>{name}.weight/.bias</c> for each that exists.</summary>
    protected static IEnumerable<TensorMapping> Linear(Func<string, bool> has, string name, string source) =>
        IfPresent(has, name + ".weight", source + ".weight").Concat(IfPresent(has, name + ".bias", source + ".bias"));

    /// <summary>Maps the embedding, final norm and output head, which all HF decoders name alike but for a prefix.</summary>
    protected static IEnumerable<TensorMapping> EmbeddingAndHead(Func<string, bool> has, string embedding, string finalNorm, string head = "lm_head")
    {
        foreach (var m in IfPresent(has, TokenEmbedding, embedding + ".weight")) yield return m;
        foreach (var m in Linear(has, "output_norm", finalNorm)) yield return m;
        foreach (var m in Linear(has, "output", head)) yield return m;
    }

    /// <summary>The ACT2FN names transformers uses, mapped onto the activations implemented here.</summary>
    protected static Activation ParseActivation(HfConfig hf, string key, string value) => value switch
    {
        "silu" or "swish" => Activation.Silu,
        "gelu_pytorch_tanh" or "gelu_new" or "gelu_fast" or "gelu_python_tanh" => Activation.GeluTanh,
        "gelu" or "gelu_python" => Activation.GeluErf,
        _ => throw new UnsupportedModelException($"{hf.Path}: activation \"{key}\" = \"{value}\" is not supported."),
    };

    /// <summary>Every family this runtime implements.</summary>
    public static IReadOnlyList<Architecture> All { get; } = [new Llama(), new Gemma(), new Gemma2(), new Phi2(), new Falcon(), new StableLm()];

    public static Architecture ForModelType(string modelType, string configPath) =>
        All.FirstOrDefault(a => a.ModelTypes.Contains(modelType))
        ?? throw new UnsupportedModelException(
            $"{configPath}: model_type \"{modelType}\" is not supported; supported: {string.Join(", ", All.SelectMany(a => a.ModelTypes))}.");

    public static Architecture ByName(string name) =>
        All.FirstOrDefault(a => a.Name == name)
        ?? throw new UnsupportedModelException($"Architecture \"{name}\" is not supported; supported: {string.Join(", ", All.Select(a => a.Name))}.");
}

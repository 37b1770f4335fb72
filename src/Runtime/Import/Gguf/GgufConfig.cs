using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Tokenization;

namespace OnDeviceLlm.Runtime.Import.Gguf;

/// <summary>
/// Maps llama.cpp's <c>{arch}.*</c> metadata onto <see cref="ModelConfig"/>; the keys are those of llama.cpp's
/// gguf-py constants (LLM_KV_*). Only what the forward pass implements is accepted; anything else is refused by name.
/// </summary>
internal static class GgufConfig
{
    public static ModelConfig Read(GgufFile file)
    {
        var m = file.Metadata;
        string arch = file.Architecture;
        return arch switch
        {
            "llama" => Llama(file, m),
            _ => throw new UnsupportedModelException(
                $"{file.Path}: GGUF architecture \"{arch}\" is not supported; supported: llama. Convert the original Hugging Face checkpoint instead."),
        };
    }

    private static ModelConfig Llama(GgufFile file, GgufMetadata m)
    {
        const string a = "llama.";
        RequireNoRopeScaling(file, a);
        int hidden = m.RequireInt(a + "embedding_length"), heads = m.RequireInt(a + "attention.head_count");
        if (heads == 0 || hidden % heads != 0 && m.Int(a + "attention.key_length") is null)
            throw new ModelFormatException(file.Path, $"{a}embedding_length {hidden} is not a multiple of {a}attention.head_count {heads}.");
        int headDim = m.Int(a + "attention.key_length") ?? hidden / heads;
        if (m.Int(a + "attention.value_length") is int v && v != headDim)
            throw new UnsupportedModelException($"{file.Path}: attention.value_length {v} differs from key_length {headDim}, which this runtime does not implement.");
        int rotary = m.Int(a + "rope.dimension_count") ?? headDim;
        if (rotary != headDim)
            throw new UnsupportedModelException($"{file.Path}: {a}rope.dimension_count {rotary} is not the head size {headDim}; partial rotary llama models are not supported.");
        int kvHeads = m.Int(a + "attention.head_count_kv") ?? heads;
        if (kvHeads == 0 || heads % kvHeads != 0)
            throw new ModelFormatException(file.Path, $"{a}attention.head_count {heads} is not a multiple of head_count_kv {kvHeads}.");
        return new ModelConfig
        {
            Architecture = "llama",
            VocabSize = VocabSize(file, a),
            HiddenSize = hidden,
            NumLayers = m.RequireInt(a + "block_count"),
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            IntermediateSize = m.RequireInt(a + "feed_forward_length"),
            ContextLength = m.RequireInt(a + "context_length"),
            Norm = NormKind.RmsNorm,
            NormEps = m.Float(a + "attention.layer_norm_rms_epsilon") ?? 1e-5f,
            Activation = Activation.Silu,
            FeedForward = FeedForwardKind.Gated,
            Layout = BlockLayout.Sequential,
            Positions = PositionEncoding.Rope,
            RotaryDim = rotary,
            RopeTheta = m.Float(a + "rope.freq_base") ?? 10000f,
            AttentionScale = 1f / MathF.Sqrt(headDim),
            TiedEmbeddings = !file.Contains(TensorNames.Output),
        };
    }

    /// <summary>{arch}.vocab_size when written, else the embedding's rows, else the tokenizer's token count.</summary>
    private static int VocabSize(GgufFile file, string a)
    {
        if (file.Metadata.Int(a + "vocab_size") is int v) return v;
        if (file.Find(TensorNames.TokenEmbedding) is { Dims.Length: 2 } embedding) return checked((int)embedding.Dims[1]);
        return file.Metadata.Array<string>(GgufTokenizer.TokensKey)?.Length
            ?? throw new ModelFormatException(file.Path, $"the vocabulary size is unknown: no {a}vocab_size, no {TensorNames.TokenEmbedding} and no tokenizer.");
    }

    private static void RequireNoRopeScaling(GgufFile file, string a)
    {
        string? scaling = file.Metadata.String(a + "rope.scaling.type");
        if (scaling is not null and not "none")
            throw new UnsupportedModelException($"{file.Path}: {a}rope.scaling.type \"{scaling}\" is not supported (only unscaled RoPE).");
        if (file.Metadata.Float(a + "rope.scaling.factor") is float f && f != 1f && scaling is null)
            throw new UnsupportedModelException($"{file.Path}: {a}rope.scaling.factor {f} is not supported (only unscaled RoPE).");
        if (file.Contains("rope_freqs.weight"))
            throw new UnsupportedModelException($"{file.Path}: the rope_freqs tensor (Llama 3.1 frequency scaling) is not supported.");
    }
}

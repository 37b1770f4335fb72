using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Tokenization;

namespace OnDeviceLlm.Runtime.Import.Gguf;

/// <summary>
/// Maps llama.cpp's <c>{arch}.*</c> metadata onto <see cref="ModelConfig"/> for the families the forward pass
/// implements; the keys are those of llama.cpp's gguf-py constants (LLM_KV_*), and the fixed choices each
/// llama.cpp architecture makes in code (activation, norm kind, residual layout) are spelled out here.
/// </summary>
internal static class GgufConfig
{
    /// <summary>The families the forward pass implements, named as llama.cpp names them.</summary>
    public static IReadOnlyList<string> Families { get; } = ["llama", "gemma", "gemma2", "phi2", "falcon", "stablelm"];

    /// <summary>What the importer reads: the families, and Qwen 2, which is Llama with q/k/v biases and rotate-half RoPE.</summary>
    public static IReadOnlyList<string> Supported { get; } = [.. Families, "qwen2"];

    public static ModelConfig Read(GgufFile file)
    {
        string arch = file.Architecture;
        if (!Supported.Contains(arch))
            throw new UnsupportedModelException(
                $"{file.Path}: GGUF architecture \"{arch}\" is not supported; supported: {string.Join(", ", Supported)}. Convert the original Hugging Face checkpoint instead.");
        var m = file.Metadata;
        string a = arch + ".";
        string family = arch == "qwen2" ? "llama" : arch;
        RequireNoRopeScaling(file, a);
        int hidden = m.RequireInt(a + "embedding_length"), heads = m.RequireInt(a + "attention.head_count");
        int? keyLength = m.Int(a + "attention.key_length");
        if (heads == 0 || (keyLength is null && hidden % heads != 0))
            throw new ModelFormatException(file.Path, $"{a}embedding_length {hidden} is not a multiple of {a}attention.head_count {heads}.");
        int headDim = keyLength ?? hidden / heads;
        if (m.Int(a + "attention.value_length") is int v && v != headDim)
            throw new UnsupportedModelException($"{file.Path}: attention.value_length {v} differs from key_length {headDim}, which this runtime does not implement.");
        int kvHeads = m.Int(a + "attention.head_count_kv") ?? heads;
        if (kvHeads == 0 || heads % kvHeads != 0)
            throw new ModelFormatException(file.Path, $"{a}attention.head_count {heads} is not a multiple of head_count_kv {kvHeads}.");
        int layers = m.RequireInt(a + "block_count");
        // Every layer holds tensors, so a block count above the tensor count is corrupt (and would make the expected-tensor table huge).
        if (layers == 0 || layers > file.Tensors.Count)
            throw new ModelFormatException(file.Path, $"{a}block_count {layers} does not fit the file's {file.Tensors.Count} tensors.");
        int rotary = m.Int(a + "rope.dimension_count") ?? headDim;
        if (rotary > headDim || rotary % 2 != 0)
            throw new ModelFormatException(file.Path, $"{a}rope.dimension_count {rotary} is not an even number up to the head size {headDim}.");
        bool layerNorm = family is "phi2" or "falcon" or "stablelm";

        var config = new ModelConfig
        {
            Architecture = family,
            VocabSize = VocabSize(file, a),
            HiddenSize = hidden,
            NumLayers = layers,
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            IntermediateSize = m.Int(a + "feed_forward_length") ?? (arch == "falcon" ? 4 * hidden : throw Missing(file, a + "feed_forward_length")),
            ContextLength = m.RequireInt(a + "context_length"),
            // Gemma's (1 + w) norms are stored by llama.cpp's converter with the 1 added, so they are plain RMSNorm here.
            Norm = layerNorm ? NormKind.LayerNorm : NormKind.RmsNorm,
            NormEps = m.Float(a + (layerNorm ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon")) ?? 1e-5f,
            Activation = family switch { "gemma" or "gemma2" or "phi2" => Activation.GeluTanh, "falcon" => Activation.GeluErf, _ => Activation.Silu },
            FeedForward = family is "phi2" or "falcon" ? FeedForwardKind.Plain : FeedForwardKind.Gated,
            Layout = family switch
            {
                "phi2" or "falcon" => BlockLayout.Parallel,
                "gemma2" => BlockLayout.Sandwich,
                // llama.cpp runs StableLM's parallel residual exactly when the layer has no ffn_norm.
                "stablelm" => file.Contains(TensorNames.Layer(0, TensorNames.FfnNorm)) ? BlockLayout.Sequential : BlockLayout.Parallel,
                _ => BlockLayout.Sequential,
            },
            Positions = PositionEncoding.Rope,
            RotaryDim = rotary,
            RopeTheta = m.Float(a + "rope.freq_base") ?? 10000f,
            ScaleEmbeddings = family is "gemma" or "gemma2",
            AttentionScale = 1f / MathF.Sqrt(headDim),
            QkNorm = file.Contains(TensorNames.Layer(0, TensorNames.AttnQNorm)),
            TiedEmbeddings = !file.Contains(TensorNames.Output),
        };
        if (family == "llama" && rotary != headDim)
            throw new UnsupportedModelException($"{file.Path}: {a}rope.dimension_count {rotary} is not the head size {headDim}; partial rotary llama models are not supported.");
        if (family != "gemma2") return config;

        int window = m.Int(a + "attention.sliding_window") ?? 0;
        return config with
        {
            // llama.cpp's gemma2 scales by the head size, except for the 27B model (46 layers), which uses hidden / heads.
            AttentionScale = m.Float(a + "attention.scale") ?? 1f / MathF.Sqrt(layers == 46 ? hidden / heads : headDim),
            AttentionSoftcap = m.Float(a + "attn_logit_softcapping") ?? 0f,
            FinalSoftcap = m.Float(a + "final_logit_softcapping") ?? 0f,
            SlidingWindow = window,
            // Every even layer slides, as in llama.cpp (swa pattern 2) and transformers.
            SlidingLayers = window > 0 ? Enumerable.Range(0, layers).Select(i => i % 2 == 0).ToArray() : [],
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

    private static ModelFormatException Missing(GgufFile file, string key) => new(file.Path, $"the required metadata key {key} is missing.");

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

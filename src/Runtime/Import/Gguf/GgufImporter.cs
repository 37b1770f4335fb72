using System.Runtime.InteropServices;
using OnDeviceLlm.Runtime.Architectures;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Quantization;
using OnDeviceLlm.Runtime.Tokenization;

namespace OnDeviceLlm.Runtime.Import.Gguf;

/// <summary>
/// Reads a llama.cpp GGUF model: its metadata becomes the <see cref="ModelConfig"/>, its tensors (already named as
/// ours) become the import's tensors, its tokenizer metadata is embedded as a vocab-only GGUF (see <see cref="GgufTokenizer"/>).
/// </summary>
public static class GgufImporter
{
    public static ImportedModel Import(string path) => Import(GgufFile.Open(path));

    /// <summary>Reads an open GGUF file; the import owns it from here on, and disposes it even when reading fails.</summary>
    internal static ImportedModel Import(GgufFile file)
    {
        string path = file.Path;
        try
        {
            if (file.Tensors.Count == 0)
                throw new ModelFormatException(path, "has no tensors: it is a vocab-only GGUF, usable as a tokenizer but not as a model.");
            var config = GgufConfig.Read(file);
            var tensors = MapTensors(file, config);
            var special = ReadSpecialTokens(file.Metadata, config);
            // llama.cpp's "no_vocab" models run on token ids alone.
            var tokenizer = file.Metadata.String(GgufTokenizer.ModelKey) is null or "no_vocab" or "none" ? TokenizerFiles.None : GgufTokenizer.Extract(file.Metadata);
            return new ImportedModel(Path.GetFullPath(path), config, special, tokenizer, tensors, new FileTensors(file));
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static IReadOnlyList<ImportedTensor> MapTensors(GgufFile file, ModelConfig config)
    {
        var expected = TensorNames.Expected(config).ToDictionary(e => e.Name);
        var result = new List<ImportedTensor>();
        var mapped = new HashSet<string>(StringComparer.Ordinal);
        foreach (var info in file.Tensors)
        {
            var type = GgmlTypes.ToTensorType(info.Type)
                ?? (GgufDequantize.Supports(info.Type) ? TensorType.Q8_0
                    : throw new UnsupportedModelException($"{file.Path}: tensor {info.Name} is stored as {info.Type}, which this runtime cannot read (supported: F32, F16, BF16, Q8_0, Q4_0, and Q4_1, Q5_0, Q5_1, Q2_K…Q6_K converted to Q8_0); convert the original checkpoint instead."));
            foreach (var (name, pieces, rows) in Map(info.Name, config, file.Contains, interleavedRope: file.Architecture == "llama"))
            {
                if (!expected.TryGetValue(name, out var e))
                    throw new UnsupportedModelException($"{file.Path}: tensor {info.Name} is not used by the {config.Architecture} architecture as configured (an unsupported model option?).");
                // A split tensor contributes some of its rows; a whole one must have exactly the expected shape.
                long[] shape = info.Shape;
                long[] sourceShape = rows is null ? e.Shape : [rows.Value, .. e.Shape[1..]];
                if (!shape.AsSpan().SequenceEqual(sourceShape))
                    throw new ModelFormatException(file.Path, $"tensor {info.Name} has shape [{string.Join(", ", shape)}] but this config needs [{string.Join(", ", sourceShape)}].");
                if (!mapped.Add(name)) throw new ModelFormatException(file.Path, $"two tensors of the file map to {name}.");
                result.Add(new ImportedTensor(name, e.Shape, type, pieces));
            }
        }
        foreach (var (name, _, required) in expected.Values)
            if (required && !mapped.Contains(name))
                throw new ModelFormatException(file.Path, $"the file lacks the tensor that becomes {name}, which a {config.Architecture} model needs.");
        return result;
    }

    /// <summary>
    /// The canonical tensors a GGUF tensor becomes: itself, or (for a fused attn_qkv) q, k and v, each with the
    /// rows it takes; <c>Rows</c> is the fused tensor's row count when it is split.
    /// </summary>
    private static IEnumerable<(string Name, IReadOnlyList<RowSlice> Pieces, long? Rows)> Map(string name, ModelConfig c, Func<string, bool> has, bool interleavedRope)
    {
        if (Suffix(name, "attn_qkv.weight", out string layer) || Suffix(name, "attn_qkv.bias", out layer))
        {
            // llama.cpp stores q, k and v one after another (falcon's converter reorders them so: tensor_data_layout "jploski").
            string kind = name.EndsWith(".bias", StringComparison.Ordinal) ? "bias" : "weight";
            long q = (long)c.NumHeads * c.HeadDim, kv = (long)c.NumKvHeads * c.HeadDim;
            yield return (layer + "attn_q." + kind, [new RowSlice(name, 0, q)], q + 2 * kv);
            yield return (layer + "attn_k." + kind, [new RowSlice(name, q, kv)], q + 2 * kv);
            yield return (layer + "attn_v." + kind, [new RowSlice(name, q + kv, kv)], q + 2 * kv);
            yield break;
        }
        // Falcon 40B's two LayerNorms: llama.cpp's converter names ln_attn (in front of attention) attn_norm_2 and
        // ln_mlp (in front of the MLP) attn_norm; here they are attn_norm and ffn_norm.
        if (c.Architecture == "falcon" && (Suffix(name, "attn_norm_2.weight", out layer) || Suffix(name, "attn_norm_2.bias", out layer)))
        {
            yield return (layer + (name.EndsWith(".bias", StringComparison.Ordinal) ? TensorNames.AttnNormBias : TensorNames.AttnNorm), [RowSlice.All(name)], null);
            yield break;
        }
        if (c.Architecture == "falcon" && (Suffix(name, TensorNames.AttnNorm, out layer) || Suffix(name, TensorNames.AttnNormBias, out layer))
            && has(layer + "attn_norm_2.weight"))
        {
            yield return (layer + (name.EndsWith(".bias", StringComparison.Ordinal) ? TensorNames.FfnNormBias : TensorNames.FfnNorm), [RowSlice.All(name)], null);
            yield break;
        }
        // Only llama.cpp's "llama" stores Q/K for interleaved RoPE; its qwen2 and the other families use rotate-half (NeoX) as we do.
        yield return (name, interleavedRope && IsRotary(name) ? Unpermute(name, c) : [RowSlice.All(name)], null);
    }

    private static bool Suffix(string name, string suffix, out string layer)
    {
        bool match = name.StartsWith("blk.", StringComparison.Ordinal) && name.EndsWith("." + suffix, StringComparison.Ordinal);
        layer = match ? name[..^suffix.Length] : "";
        return match;
    }

    internal static bool IsRotary(string name) =>
        name.EndsWith("." + TensorNames.AttnQ, StringComparison.Ordinal) || name.EndsWith("." + TensorNames.AttnK, StringComparison.Ordinal)
        || name.EndsWith("." + TensorNames.AttnQBias, StringComparison.Ordinal) || name.EndsWith("." + TensorNames.AttnKBias, StringComparison.Ordinal);

    /// <summary>
    /// llama.cpp's converter permutes the rows of Llama's Q and K so that each rotary pair (i, i + d/2) of Hugging
    /// Face's rotate-half layout sits on adjacent rows (2i, 2i + 1), for its interleaved RoPE. The forward pass here
    /// uses rotate-half, so each head's even rows are taken first, then its odd rows: the inverse of
    /// convert_hf_to_gguf.py's LlamaModel.permute.
    /// </summary>
    private static RowSlice[] Unpermute(string name, ModelConfig config)
    {
        int heads = name.Contains(".attn_q.", StringComparison.Ordinal) ? config.NumHeads : config.NumKvHeads, d = config.HeadDim;
        var pieces = new RowSlice[heads * d];
        int k = 0;
        for (int h = 0; h < heads; h++)
            for (int parity = 0; parity < 2; parity++)
                for (int i = parity; i < d; i += 2)
                    pieces[k++] = new RowSlice(name, (long)h * d + i, 1);
        return pieces;
    }

    /// <summary>Special ids from tokenizer.ggml.*; llama.cpp writes -1 (as uint32) or an out-of-range id for "none".</summary>
    internal static SpecialTokens ReadSpecialTokens(GgufMetadata m, ModelConfig? config)
    {
        int vocab = config?.VocabSize ?? m.Array<string>(GgufTokenizer.TokensKey)?.Length ?? int.MaxValue;
        int? Id(string key) => GgufTokenizer.Id(m, key, vocab);
        int? bos = Id("tokenizer.ggml.bos_token_id");
        var eos = new List<int>();
        // llama.cpp ends generation at EOS and also at the end-of-turn / end-of-message tokens chat models declare.
        foreach (string key in new[] { "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id" })
            if (Id(key) is int id && !eos.Contains(id)) eos.Add(id);
        bool addBos = GgufTokenizer.AddsBos(m);
        return new SpecialTokens
        {
            Bos = bos,
            Eos = eos,
            Pad = Id("tokenizer.ggml.padding_token_id"),
            AddBos = addBos && bos is not null,
            ChatTemplate = m.String("tokenizer.chat_template"),
        };
    }

    /// <summary>
    /// The file's tensors as the converter reads them. Types the runtime does not compute with (k-quants, Q4_1,
    /// Q5_0, Q5_1) are decoded and re-encoded as Q8_0, one tensor at a time into native memory: the converter reads
    /// a tensor's pieces consecutively, so only the current one is kept.
    /// </summary>
    private sealed unsafe class FileTensors(GgufFile file) : ISourceTensors
    {
        private string? _convertedName;
        private byte* _converted;

        public SourceTensor Get(string name)
        {
            var info = file.Find(name) ?? throw new ModelFormatException(file.Path, $"the file has no tensor named '{name}'.");
            if (GgmlTypes.ToTensorType(info.Type) is not null)
            {
                var t = file.GetTensor(name);
                return new SourceTensor(t.Type, t.Shape, t.Data);
            }
            if (_convertedName != name)
            {
                Free();
                _converted = ToQ8(info);
                _convertedName = name;
            }
            return new SourceTensor(TensorType.Q8_0, info.Shape, (nint)_converted);
        }

        private byte* ToQ8(GgufTensorInfo info)
        {
            int cols = checked((int)info.Dims[0]);
            long rows = info.Dims.Skip(1).Aggregate(1L, (a, b) => a * b);
            GgmlTypes.TryGetBlock(info.Type, out int blockValues, out int blockBytes);
            long sourceRow = cols / blockValues * blockBytes, targetRow = cols / 32 * 34;
            byte* source = (byte*)file.Address(info);
            byte* target = (byte*)NativeMemory.Alloc((nuint)(rows * targetRow));
            float[] values = new float[cols];
            for (long r = 0; r < rows; r++)
            {
                GgufDequantize.Row(info.Type, new ReadOnlySpan<byte>(source + r * sourceRow, (int)sourceRow), values);
                Encode.Rows(TensorType.Q8_0, values, cols, new Span<byte>(target + r * targetRow, (int)targetRow));
            }
            return target;
        }

        private void Free()
        {
            if (_converted is not null) NativeMemory.Free(_converted);
            _converted = null;
            _convertedName = null;
        }

        public void Dispose()
        {
            Free();
            file.Dispose();
        }
    }
}

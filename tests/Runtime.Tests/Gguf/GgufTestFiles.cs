using OnDeviceLlm.Runtime.Import.Gguf;

namespace OnDeviceLlm.Runtime.Tests.Gguf;

/// <summary>Builds small GGUF files in memory: a one-layer llama with a SentencePiece vocabulary, in chosen tensor types.</summary>
internal static class GgufTestFiles
{
    public const int Vocab = 8, Hidden = 32, Heads = 2, KvHeads = 1, HeadDim = 16, Ffn = 32;

    public static KeyValuePair<string, GgufValue> Kv(string key, object value) => new(key, value switch
    {
        string s => new GgufValue(GgufValueType.String, s),
        uint u => new GgufValue(GgufValueType.UInt32, u),
        int i => new GgufValue(GgufValueType.Int32, i),
        float f => new GgufValue(GgufValueType.Float32, f),
        bool b => new GgufValue(GgufValueType.Bool, b),
        string[] a => new GgufValue(GgufValueType.Array, a, GgufValueType.String),
        float[] a => new GgufValue(GgufValueType.Array, a, GgufValueType.Float32),
        int[] a => new GgufValue(GgufValueType.Array, a, GgufValueType.Int32),
        _ => throw new ArgumentException(value.GetType().Name),
    });

    public static List<KeyValuePair<string, GgufValue>> LlamaMetadata() =>
    [
        Kv("general.architecture", "llama"),
        Kv("general.alignment", 32u),
        Kv("llama.context_length", 64u),
        Kv("llama.embedding_length", (uint)Hidden),
        Kv("llama.block_count", 1u),
        Kv("llama.feed_forward_length", (uint)Ffn),
        Kv("llama.attention.head_count", (uint)Heads),
        Kv("llama.attention.head_count_kv", (uint)KvHeads),
        Kv("llama.rope.dimension_count", (uint)HeadDim),
        Kv("llama.attention.layer_norm_rms_epsilon", 1e-5f),
        Kv("tokenizer.ggml.model", "llama"),
        Kv("tokenizer.ggml.tokens", new[] { "<unk>", "<s>", "</s>", "\u2581", "a", "b", "\u2581a", "ab" }),
        Kv("tokenizer.ggml.scores", new[] { 0f, 0f, 0f, -1f, -2f, -3f, -0.5f, -0.7f }),
        Kv("tokenizer.ggml.token_type", new[] { 2, 3, 3, 1, 1, 1, 1, 1 }),
        Kv("tokenizer.ggml.bos_token_id", 1u),
        Kv("tokenizer.ggml.eos_token_id", 2u),
        Kv("tokenizer.chat_template", "{{ messages }}"),
    ];

    /// <summary>The tensors of the one-layer model, ggml dims (contiguous first); matrices in <paramref name="matrixType"/>.</summary>
    public static List<(string Name, long[] Dims, GgmlType Type)> LlamaTensors(GgmlType matrixType, bool withOutput = true)
    {
        var t = new List<(string Name, long[] Dims, GgmlType Type)>
        {
            ("token_embd.weight", [Hidden, Vocab], GgmlType.F32),
            ("output_norm.weight", [Hidden], GgmlType.F32),
            ("blk.0.attn_norm.weight", [Hidden], GgmlType.F32),
            ("blk.0.attn_q.weight", [Hidden, Heads * HeadDim], matrixType),
            ("blk.0.attn_k.weight", [Hidden, KvHeads * HeadDim], matrixType),
            ("blk.0.attn_v.weight", [Hidden, KvHeads * HeadDim], matrixType),
            ("blk.0.attn_output.weight", [Heads * HeadDim, Hidden], matrixType),
            ("blk.0.ffn_norm.weight", [Hidden], GgmlType.F32),
            ("blk.0.ffn_gate.weight", [Hidden, Ffn], matrixType),
            ("blk.0.ffn_up.weight", [Hidden, Ffn], matrixType),
            ("blk.0.ffn_down.weight", [Ffn, Hidden], matrixType),
        };
        if (withOutput) t.Add(("output.weight", [Hidden, Vocab], GgmlType.F32));
        return t;
    }

    /// <summary>
    /// A complete GGUF. Tensor bytes come from <paramref name="fill"/> (name, byte length) or are a deterministic
    /// pattern; f32 values stay small and finite.
    /// </summary>
    public static byte[] Build(IReadOnlyList<KeyValuePair<string, GgufValue>> metadata, IReadOnlyList<(string Name, long[] Dims, GgmlType Type)> tensors,
                               Func<string, int, byte[]>? fill = null)
    {
        var infos = new List<GgufTensorInfo>();
        long offset = 0;
        foreach (var (name, dims, type) in tensors)
        {
            GgmlTypes.TryGetBlock(type, out int bv, out int bb);
            long bytes = dims.Aggregate(1L, (a, b) => a * b) / bv * bb;
            infos.Add(new GgufTensorInfo(name, type, dims, offset, bytes));
            offset = (offset + bytes + 31) / 32 * 32;
        }
        using var stream = new MemoryStream();
        GgufWriter.WriteHeader(stream, metadata, infos);
        long dataStart = stream.Position;
        foreach (var info in infos)
        {
            stream.Position = dataStart + info.Offset;
            stream.Write(fill?.Invoke(info.Name, (int)info.ByteLength) ?? Pattern(info));
        }
        stream.SetLength(dataStart + offset);
        return stream.ToArray();
    }

    private static byte[] Pattern(GgufTensorInfo info)
    {
        var bytes = new byte[info.ByteLength];
        var random = new Random(info.Name.GetHashCode(StringComparison.Ordinal) & 0xFFFF);
        if (info.Type == GgmlType.F32)
        {
            var floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes.AsSpan());
            for (int i = 0; i < floats.Length; i++) floats[i] = (float)(random.NextDouble() - 0.5) * 0.2f;
            return bytes;
        }
        if (info.Type == GgmlType.F16)
        {
            var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(bytes.AsSpan());
            for (int i = 0; i < halves.Length; i++) halves[i] = (Half)((random.NextDouble() - 0.5) * 0.2);
            return bytes;
        }
        random.NextBytes(bytes);
        // Block scales (the first two bytes of each Q8_0/Q4_0 block) set to a small finite f16.
        if (GgmlTypes.TryGetBlock(info.Type, out int _, out int blockBytes) && info.Type is GgmlType.Q8_0 or GgmlType.Q4_0)
            for (int b = 0; b < bytes.Length; b += blockBytes) BitConverter.TryWriteBytes(bytes.AsSpan(b, 2), (Half)0.01f);
        return bytes;
    }
}

using System.Text;
using System.Text.Json;
using OnDeviceLlm.Runtime.Import.Gguf;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Tokenization;

/// <summary>
/// A tokenizer from GGUF metadata (<c>tokenizer.ggml.*</c>), built on the same backends as the Hugging Face files:
/// <c>llama</c> (SentencePiece BPE: tokens, scores, token types, byte fallback) becomes the SentencePiece model
/// it was exported from and goes through <see cref="HfBpeBackend.FromSentencePiece"/>; <c>gpt2</c> (byte-level
/// BPE: tokens, merges, a named pre-tokenizer) becomes the tokenizer.json it was exported from. A model file keeps
/// the metadata itself, as a vocab-only GGUF named <see cref="FileName"/>.
/// </summary>
internal static class GgufTokenizer
{
    public const string FileName = "tokenizer.gguf";
    public const string ModelKey = "tokenizer.ggml.model";
    public const string TokensKey = "tokenizer.ggml.tokens";

    // llama.cpp's token types, which are SentencePiece's piece types.
    private const int Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Byte = 6;

    /// <summary>The tokenizer part of a GGUF's metadata as a vocab-only GGUF, to embed in a model file.</summary>
    public static TokenizerFiles Extract(GgufMetadata metadata)
    {
        var keys = metadata.Values.Where(kv => kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal) || kv.Key is "general.architecture" or "general.name");
        return new TokenizerFiles(new Dictionary<string, byte[]>(StringComparer.Ordinal) { [FileName] = GgufWriter.MetadataOnly(keys) });
    }

    public static TokenizerBackend FromBytes(byte[] gguf) => Create(GgufFile.ParseHeader(FileName, gguf).Metadata);

    public static TokenizerBackend FromFile(string path)
    {
        using var file = GgufFile.Open(path);
        return Create(file.Metadata);
    }

    public static TokenizerBackend Create(GgufMetadata m)
    {
        string model = m.String(ModelKey) ?? throw new TokenizerException($"{m.Path}: the GGUF has no tokenizer ({ModelKey} is missing).");
        string[] tokens = m.Array<string>(TokensKey) ?? throw new TokenizerException($"{m.Path}: {TokensKey} is missing.");
        if (tokens.Length == 0) throw new TokenizerException($"{m.Path}: {TokensKey} is empty.");
        int[] types = m.IntArray("tokenizer.ggml.token_type") ?? Enumerable.Repeat(Normal, tokens.Length).ToArray();
        if (types.Length != tokens.Length)
            throw new TokenizerException($"{m.Path}: tokenizer.ggml.token_type has {types.Length} entries for {tokens.Length} tokens.");
        return model switch
        {
            "llama" => SentencePiece(m, tokens, types),
            "gpt2" => ByteLevelBpe(m, tokens, types),
            _ => throw new TokenizerException($"{m.Path}: tokenizer model \"{model}\" is not supported (only llama and gpt2)."),
        };
    }

    private static TokenizerBackend SentencePiece(GgufMetadata m, string[] tokens, int[] types)
    {
        float[] scores = m.Array<float>("tokenizer.ggml.scores") ?? new float[tokens.Length];
        if (scores.Length != tokens.Length)
            throw new TokenizerException($"{m.Path}: tokenizer.ggml.scores has {scores.Length} entries for {tokens.Length} tokens.");
        var proto = new ProtoWriter();
        for (int i = 0; i < tokens.Length; i++)
        {
            var piece = new ProtoWriter();
            piece.String(1, tokens[i]);
            piece.Float(2, scores[i]);
            piece.Varint(3, types[i] is >= 1 and <= 6 ? types[i] : Normal);
            proto.Message(1, piece);
        }
        var trainer = new ProtoWriter();
        trainer.Varint(3, 2); // BPE: llama.cpp's "llama" vocabulary is merged by piece score, as SentencePiece BPE does
        trainer.Varint(35, types.Contains(Byte) ? 1 : 0);
        trainer.Varint(40, Id(m, "tokenizer.ggml.unknown_token_id", tokens.Length) ?? 0);
        trainer.Varint(41, Id(m, "tokenizer.ggml.bos_token_id", tokens.Length) ?? -1);
        trainer.Varint(42, Id(m, "tokenizer.ggml.eos_token_id", tokens.Length) ?? -1);
        proto.Message(2, trainer);
        var normalizer = new ProtoWriter();
        normalizer.String(1, "identity");
        // llama.cpp's defaults when the keys are absent: a dummy prefix, extra whitespace kept.
        normalizer.Varint(3, m.Bool("tokenizer.ggml.add_space_prefix") ?? true ? 1 : 0);
        normalizer.Varint(4, m.Bool("tokenizer.ggml.remove_extra_whitespaces") ?? false ? 1 : 0);
        normalizer.Varint(5, 1);
        proto.Message(3, normalizer);

        var spm = SentencePieceModel.Parse(proto.ToArray());
        // Control and unknown tokens (BOS/EOS, chat markers such as Phi-3's <|user|>) are matched where the text spells
        // them, as Hugging Face's fast tokenizers and llama.cpp (parse_special, which it uses for chat prompts) do.
        var specials = Enumerable.Range(0, tokens.Length).Where(i => types[i] is Control or Unknown)
            .Select(i => new AddedToken(i, tokens[i], Special: true, RStrip: IsPhi3(m) && tokens[i] is not ("<unk>" or "<s>" or "<|endoftext|>")))
            .ToArray();
        return HfBpeBackend.FromSentencePiece(spm, Config(m, tokens, specials));
    }

    private static TokenizerBackend ByteLevelBpe(GgufMetadata m, string[] tokens, int[] types)
    {
        string[] merges = m.Array<string>("tokenizer.ggml.merges") ?? throw new TokenizerException($"{m.Path}: tokenizer.ggml.merges is missing.");
        string pre = m.String("tokenizer.ggml.pre") ?? "default";
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            // llama.cpp's Llama 3 vocabulary emits a pre-token found whole in the vocabulary without merging, as HF's ignore_merges.
            w.WriteBoolean("ignore_merges", pre is "llama-bpe" or "llama3" or "llama-v3");
            w.WriteStartObject("vocab");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (int i = 0; i < tokens.Length; i++)
                if (seen.Add(tokens[i])) w.WriteNumber(tokens[i], i);
            w.WriteEndObject();
            w.WriteStartArray("merges");
            foreach (string merge in merges) w.WriteStringValue(merge);
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteStartArray("added_tokens");
            for (int i = 0; i < tokens.Length; i++)
            {
                if (types[i] is not (Control or UserDefined)) continue;
                w.WriteStartObject();
                w.WriteNumber("id", i);
                w.WriteString("content", tokens[i]);
                w.WriteBoolean("special", types[i] == Control);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WritePropertyName("pre_tokenizer");
            WritePreTokenizer(w, m.Path, pre);
            w.WriteStartObject("decoder");
            w.WriteString("type", "ByteLevel");
            w.WriteEndObject();
            w.WriteEndObject();
        }
        HfBpeBackend? backend = null;
        var config = Config(m, tokens);
        TokenizerConfig.Parse(m.Path, buffer.ToArray(), root => backend = HfBpeBackend.FromTokenizerJson(root, config));
        return backend!;
    }

    /// <summary>The Hugging Face pre-tokenizer of each llama.cpp pre-tokenizer name (llama-vocab.cpp's regex sets).</summary>
    private static void WritePreTokenizer(Utf8JsonWriter w, string path, string pre)
    {
        const string byteLevel = """{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}""";
        string json = pre switch
        {
            "default" or "gpt-2" => byteLevel,
            "llama-bpe" or "llama3" or "llama-v3" => SplitThenByteLevel(Llama3Pattern),
            "qwen2" => SplitThenByteLevel(Qwen2Pattern),
            "falcon" => """{"type":"Sequence","pretokenizers":[{"type":"Punctuation","behavior":"Contiguous"},""" + byteLevel
                        + """,{"type":"Digits","individual_digits":false},{"type":"Split","pattern":{"Regex":"[0-9][0-9][0-9]"},"behavior":"Isolated","invert":false}]}""",
            _ => throw new TokenizerException($"{path}: the GGUF pre-tokenizer \"{pre}\" is not supported (supported: default, gpt-2, falcon, llama-bpe, qwen2)."),
        };
        w.WriteRawValue(json);
    }

    private static string SplitThenByteLevel(string pattern) =>
        """{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":""" + "\"" + JsonEncodedText.Encode(pattern).Value + "\""
        + """},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]}""";

    /// <summary>Qwen 2's split: Llama 3's with single digits (its tokenizer.json; llama.cpp's LLAMA_VOCAB_PRE_TYPE_QWEN2).</summary>
    private const string Qwen2Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Llama 3's pre-tokenizer split (its tokenizer.json; llama.cpp's LLAMA_VOCAB_PRE_TYPE_LLAMA3).</summary>
    private const string Llama3Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>A tokenizer_config.json equivalent: BOS/EOS tokens, whether encoding with special tokens adds them, and special added tokens.</summary>
    /// <summary>llama.cpp (llama-vocab.cpp) gives Phi-3's special tokens rstrip, as Phi-3's tokenizer.json does.</summary>
    private static bool IsPhi3(GgufMetadata m) =>
        m.String("general.architecture") == "phi3" || (m.String("general.name") ?? "").Replace("-", "").Contains("phi3", StringComparison.OrdinalIgnoreCase);

    /// <summary>tokenizer.ggml.add_bos_token, else llama.cpp's default: on for SentencePiece and for Llama 3's byte-level vocabulary.</summary>
    public static bool AddsBos(GgufMetadata m) =>
        m.Bool("tokenizer.ggml.add_bos_token") ?? (m.String(ModelKey) == "llama" || m.String("tokenizer.ggml.pre") is "llama-bpe" or "llama3" or "llama-v3");

    private static TokenizerConfig Config(GgufMetadata m, string[] tokens, IReadOnlyList<AddedToken>? addedTokens = null)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteBoolean("add_bos_token", AddsBos(m));
            w.WriteBoolean("add_eos_token", m.Bool("tokenizer.ggml.add_eos_token") ?? false);
            // llama.cpp never applies transformers' clean_up_tokenization_spaces.
            w.WriteBoolean("clean_up_tokenization_spaces", false);
            if (Id(m, "tokenizer.ggml.bos_token_id", tokens.Length) is int bos) w.WriteString("bos_token", tokens[bos]);
            if (Id(m, "tokenizer.ggml.eos_token_id", tokens.Length) is int eos) w.WriteString("eos_token", tokens[eos]);
            w.WriteStartObject("added_tokens_decoder");
            foreach (var t in addedTokens ?? [])
            {
                w.WriteStartObject(t.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
                w.WriteString("content", t.Content);
                w.WriteBoolean("special", t.Special);
                w.WriteBoolean("rstrip", t.RStrip);
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return TokenizerConfig.Read(new Dictionary<string, byte[]> { ["tokenizer_config.json"] = buffer.ToArray() });
    }

    /// <summary>A token id key; llama.cpp writes -1 (often as uint32) or an out-of-range id for "none".</summary>
    internal static int? Id(GgufMetadata m, string key, int count)
    {
        if (!m.Values.TryGetValue(key, out var raw) || raw.Value is ulong and > long.MaxValue) return null;
        long? v = m.Integer(key);
        return v >= 0 && v < count ? (int)v : null;
    }

    /// <summary>Just enough protobuf encoding to write a SentencePiece ModelProto.</summary>
    private sealed class ProtoWriter
    {
        private readonly MemoryStream _buffer = new();

        public byte[] ToArray() => _buffer.ToArray();

        public void Varint(int field, long value)
        {
            Raw(((ulong)field << 3) | 0);
            Raw((ulong)value);
        }

        public void Float(int field, float value)
        {
            Raw(((ulong)field << 3) | 5);
            Span<byte> b = stackalloc byte[4];
            BitConverter.TryWriteBytes(b, value);
            _buffer.Write(b);
        }

        public void String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

        public void Message(int field, ProtoWriter message) => Bytes(field, message.ToArray());

        private void Bytes(int field, byte[] bytes)
        {
            Raw(((ulong)field << 3) | 2);
            Raw((ulong)bytes.Length);
            _buffer.Write(bytes);
        }

        private void Raw(ulong value)
        {
            while (value >= 0x80)
            {
                _buffer.WriteByte((byte)(value | 0x80));
                value >>= 7;
            }
            _buffer.WriteByte((byte)value);
        }
    }
}

using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace OnDeviceLlm.Runtime.Tokenization;

/// <summary>The pieces of a tokenizer that TextTokenizer drives; one implementation per file family.</summary>
internal abstract class TokenizerBackend
{
    public abstract Tokenizer Inner { get; }
    public abstract int VocabSize { get; }
    public abstract void Encode(string text, bool addSpecialTokens, List<int> ids);
    public abstract string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens);
    public abstract bool IsSpecial(int id);
    public abstract int? TokenToId(string token);
}

/// <summary>How tokenizer.json's decoder turns tokens back into bytes.</summary>
internal sealed record DecoderSpec(bool ByteLevel, (string From, string To)[] Replacements, bool ByteFallback, int StripLeadingSpaces, bool CleanUpSpaces = false);

/// <summary>
/// A Hugging Face BPE tokenizer (tokenizer.json, or vocab.json + merges.txt) on top of the library's
/// <see cref="BpeTokenizer"/>, which does the merging and caching. The library lacks what this class adds:
/// tokenizer.json's normalizers and pre-tokenizer sequences (given to it as <see cref="HfNormalizer"/> and
/// <see cref="HfPreTokenizer"/>), added tokens matched anywhere in the text, byte fallback (it emits the unknown
/// token, which we replace by the character's &lt;0xNN&gt; tokens), the post-processor template, and decoding of
/// added tokens outside the model vocabulary and of byte-fallback tokens. Words of <see cref="LongWordBpe.MinLength"/>
/// chars or more are merged by <see cref="LongWordBpe"/>, with the library's result, because the library takes time
/// quadratic in a word's length.
/// </summary>
internal sealed class HfBpeBackend : TokenizerBackend
{
    private readonly BpeTokenizer _bpe;
    private readonly LongWordBpe? _longWords;
    private readonly ConcurrentDictionary<string, int[]> _words = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _wordLookup;
    private int _wordCount;
    private readonly HfNormalizer _normalizer;
    private readonly HfPreTokenizer _preTokenizer;
    private readonly AddedTokenMatcher? _rawAddedTokens;
    private readonly AddedTokenMatcher? _normalizedAddedTokens;
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int> _addedByContent;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabLookup;
    private readonly bool _ignoreMerges;
    private readonly int _unkId;
    private readonly int[]? _byteFallbackIds;
    private readonly int[] _prefix;
    private readonly int[] _suffix;
    private readonly bool[] _special;
    private readonly bool[] _known;
    private readonly byte[] _pieceBytes;
    private readonly int[] _pieceStart;
    private readonly int _stripLeadingSpaces;
    private readonly bool _cleanUpSpaces;

    private HfBpeBackend(BpeTokenizer bpe, LongWordBpe? longWords, HfNormalizer normalizer, HfPreTokenizer preTokenizer, Dictionary<string, int> vocab,
        List<AddedToken> added, int[] unmatchedSpecialIds, bool ignoreMerges, string? unkToken, bool byteFallback, int[] prefix, int[] suffix, DecoderSpec decoder)
    {
        _bpe = bpe;
        _longWords = longWords;
        _wordLookup = _words.GetAlternateLookup<ReadOnlySpan<char>>();
        _normalizer = normalizer;
        _preTokenizer = preTokenizer;
        _vocab = vocab;
        _vocabLookup = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _ignoreMerges = ignoreMerges;
        _prefix = prefix;
        _suffix = suffix;
        _stripLeadingSpaces = decoder.StripLeadingSpaces;
        _cleanUpSpaces = decoder.CleanUpSpaces;
        _addedByContent = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (AddedToken t in added) _addedByContent.TryAdd(t.Content, t.Id);

        _rawAddedTokens = AddedTokenMatcher.Create(added.Where(t => !t.Normalized || !normalizer.HasSteps), t => t.Content);
        _normalizedAddedTokens = normalizer.HasSteps
            ? AddedTokenMatcher.Create(added.Where(t => t.Normalized), t => normalizer.NormalizeText(t.Content))
            : null;

        _unkId = unkToken is not null && vocab.TryGetValue(unkToken, out int unk) ? unk : -1;
        if (byteFallback && _unkId >= 0)
        {
            _byteFallbackIds = new int[256];
            for (int b = 0; b < 256; b++)
                _byteFallbackIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : _unkId;
        }

        int size = 0;
        foreach (int id in vocab.Values) size = Math.Max(size, id + 1);
        foreach (AddedToken t in added) size = Math.Max(size, t.Id + 1);
        VocabSize = size;
        _special = new bool[size];
        _known = new bool[size];
        var pieces = new string?[size];
        foreach (var (token, id) in vocab) { pieces[id] = token; _known[id] = true; }
        foreach (AddedToken t in added) { pieces[t.Id] = t.Content; _known[t.Id] = true; _special[t.Id] = t.Special; }
        foreach (int id in unmatchedSpecialIds) if ((uint)id < (uint)size) _special[id] = true;
        (_pieceBytes, _pieceStart) = BuildPieceBytes(pieces, decoder);
    }

    public override Tokenizer Inner => _bpe;
    public override int VocabSize { get; }
    public override bool IsSpecial(int id) => (uint)id < (uint)_special.Length && _special[id];

    public override int? TokenToId(string token) =>
        _addedByContent.TryGetValue(token, out int id) || _vocab.TryGetValue(token, out id) ? id : null;

    public override void Encode(string text, bool addSpecialTokens, List<int> ids)
    {
        if (addSpecialTokens) ids.AddRange(_prefix);
        int pos = 0;
        if (_rawAddedTokens is not null)
        {
            while (_rawAddedTokens.FindNext(text, pos, out int start, out int end, out AddedToken token))
            {
                EncodeSegment(text.AsSpan(pos, start - pos), pos == 0, ids);
                ids.Add(token.Id);
                pos = end;
            }
        }
        EncodeSegment(text.AsSpan(pos), pos == 0, ids);
        if (addSpecialTokens) ids.AddRange(_suffix);
    }

    private void EncodeSegment(ReadOnlySpan<char> segment, bool atTextStart, List<int> ids)
    {
        if (segment.IsEmpty) return;
        string normalized = _normalizer.HasSteps ? _normalizer.NormalizeText(segment.ToString()) : segment.ToString();
        int pos = 0;
        if (_normalizedAddedTokens is not null)
        {
            while (_normalizedAddedTokens.FindNext(normalized, pos, out int start, out int end, out AddedToken token))
            {
                EncodePiece(normalized.AsSpan(pos, start - pos), atTextStart && pos == 0, ids);
                ids.Add(token.Id);
                pos = end;
            }
        }
        EncodePiece(normalized.AsSpan(pos), atTextStart && pos == 0, ids);
    }

    private void EncodePiece(ReadOnlySpan<char> piece, bool atTextStart, List<int> ids)
    {
        if (piece.IsEmpty) return;
        string prepared = _normalizer.PreparePiece(piece, atTextStart);
        if (!_ignoreMerges)
        {
            EncodeModel(prepared, considerPreTokenization: true, ids);
            return;
        }
        // ignore_merges (Llama 3): a pre-token found whole in the vocabulary is emitted as is, which the library cannot express.
        foreach ((int offset, int length) in _preTokenizer.PreTokenize(prepared))
        {
            ReadOnlySpan<char> word = prepared.AsSpan(offset, length);
            if (_vocabLookup.TryGetValue(word, out int id)) ids.Add(id);
            else EncodeModel(word, considerPreTokenization: false, ids);
        }
    }

    private void EncodeModel(ReadOnlySpan<char> text, bool considerPreTokenization, List<int> ids)
    {
        if (_longWords is null || text.Length < LongWordBpe.MinLength)
        {
            EncodeWithLibrary(text, considerPreTokenization, ids);
            return;
        }
        if (!considerPreTokenization)
        {
            EncodeLongWord(text, ids);
            return;
        }
        // Word by word, as the library would, so that a word too long for the library's merge loop can be taken out.
        foreach ((int offset, int length) in _preTokenizer.PreTokenize(text))
        {
            ReadOnlySpan<char> word = text.Slice(offset, length);
            if (length >= LongWordBpe.MinLength) EncodeLongWord(word, ids);
            else EncodeShortWord(word, ids);
        }
    }

    private const int CachedWordLength = 24, CachedWordCount = 100_000;

    /// <summary>
    /// A word through the library, its ids kept: one library call per word costs more than the whole-text call it
    /// replaces, but words repeat, and a lookup is cheaper than either. The cache stops growing at a bound.
    /// </summary>
    private void EncodeShortWord(ReadOnlySpan<char> word, List<int> ids)
    {
        bool cacheable = word.Length <= CachedWordLength;
        if (cacheable && _wordLookup.TryGetValue(word, out int[]? known))
        {
            ids.AddRange(known);
            return;
        }
        int before = ids.Count;
        EncodeWithLibrary(word, considerPreTokenization: false, ids);
        if (cacheable && Volatile.Read(ref _wordCount) < CachedWordCount && _wordLookup.TryAdd(word, CollectionsMarshal.AsSpan(ids)[before..].ToArray()))
            Interlocked.Increment(ref _wordCount);
    }

    private void EncodeLongWord(ReadOnlySpan<char> word, List<int> ids)
    {
        var tokens = new List<(int Id, int Start, int Length)>();
        _longWords!.Encode(word, tokens);
        foreach ((int id, int start, int length) in tokens)
        {
            if (id == _unkId && _byteFallbackIds is not null) AppendByteFallback(word.Slice(start, length), ids);
            else ids.Add(id);
        }
    }

    private void EncodeWithLibrary(ReadOnlySpan<char> text, bool considerPreTokenization, List<int> ids)
    {
        IReadOnlyList<int> result = _bpe.EncodeToIds(text, considerPreTokenization, considerNormalization: false);
        if (_byteFallbackIds is null || !Contains(result, _unkId))
        {
            ids.AddRange(result);
            return;
        }
        // Byte fallback: the library reports characters missing from the vocabulary as the unknown token; each
        // becomes the <0xNN> tokens of its UTF-8 bytes, as Hugging Face's BPE with byte_fallback does.
        IReadOnlyList<EncodedToken> tokens = _bpe.EncodeToTokens(text, out _, considerPreTokenization, considerNormalization: false);
        foreach (EncodedToken token in tokens)
        {
            if (token.Id != _unkId) { ids.Add(token.Id); continue; }
            (int offset, int length) = token.Offset.GetOffsetAndLength(text.Length);
            AppendByteFallback(text.Slice(offset, length), ids);
        }
    }

    /// <summary>An unknown char (unknown tokens are never fused under byte fallback) as its UTF-8 bytes' tokens, or the unknown token if a byte has none.</summary>
    private void AppendByteFallback(ReadOnlySpan<char> unknown, List<int> ids)
    {
        Span<byte> utf8 = stackalloc byte[8];
        int n = Encoding.UTF8.GetBytes(unknown, utf8);
        bool allBytesKnown = true;
        for (int i = 0; i < n; i++) allBytesKnown &= _byteFallbackIds![utf8[i]] != _unkId;
        if (!allBytesKnown) { ids.Add(_unkId); return; }
        for (int i = 0; i < n; i++) ids.Add(_byteFallbackIds![utf8[i]]);
    }

    private static bool Contains(IReadOnlyList<int> list, int value)
    {
        for (int i = 0; i < list.Count; i++) if (list[i] == value) return true;
        return false;
    }

    public override string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens)
    {
        int total = 0;
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_known.Length || !_known[id])
                throw new TokenizerException($"Cannot decode token id {id}: it is outside the vocabulary (size {VocabSize}).");
            if (!(skipSpecialTokens && _special[id])) total += _pieceStart[id + 1] - _pieceStart[id];
        }
        byte[] buffer = ArrayPool<byte>.Shared.Rent(Math.Max(total, 1));
        try
        {
            int n = 0;
            foreach (int id in ids)
            {
                if (skipSpecialTokens && _special[id]) continue;
                ReadOnlySpan<byte> piece = _pieceBytes.AsSpan(_pieceStart[id], _pieceStart[id + 1] - _pieceStart[id]);
                piece.CopyTo(buffer.AsSpan(n));
                n += piece.Length;
            }
            int skip = 0;
            while (skip < _stripLeadingSpaces && skip < n && buffer[skip] == (byte)' ') skip++;
            string text = Encoding.UTF8.GetString(buffer, skip, n - skip);
            return _cleanUpSpaces ? CleanUpTokenizationSpaces(text) : text;
        }
        finally { ArrayPool<byte>.Shared.Return(buffer); }
    }

    /// <summary>transformers' clean_up_tokenization, which its decode applies after the tokenizer's own decoder.</summary>
    private static string CleanUpTokenizationSpaces(string text) => text
        .Replace(" .", ".").Replace(" ?", "?").Replace(" !", "!").Replace(" ,", ",").Replace(" ' ", "'")
        .Replace(" n't", "n't").Replace(" 'm", "'m").Replace(" 's", "'s").Replace(" 've", "'ve").Replace(" 're", "'re");

    /// <summary>Every token's decoded bytes in one blob, so decoding is a copy per token.</summary>
    private static (byte[] Bytes, int[] Start) BuildPieceBytes(string?[] pieces, DecoderSpec decoder)
    {
        var blob = new ArrayBufferWriter<byte>(pieces.Length * 6);
        var start = new int[pieces.Length + 1];
        for (int id = 0; id < pieces.Length; id++)
        {
            start[id] = blob.WrittenCount;
            if (pieces[id] is string piece) WritePiece(piece, decoder, blob);
        }
        start[pieces.Length] = blob.WrittenCount;
        return (blob.WrittenSpan.ToArray(), start);
    }

    private static void WritePiece(string piece, DecoderSpec decoder, ArrayBufferWriter<byte> blob)
    {
        if (decoder.ByteLevel)
        {
            // Hugging Face's ByteLevel decoder maps every char back to its byte, or keeps the token's own UTF-8
            // when some char is outside the alphabet (added tokens such as Phi-2's runs of spaces).
            Span<byte> bytes = blob.GetSpan(piece.Length);
            bool mapped = true;
            for (int i = 0; i < piece.Length && mapped; i++)
            {
                int b = ByteLevelAlphabet.ToByte(piece[i]);
                mapped = b >= 0;
                if (mapped) bytes[i] = (byte)b;
            }
            if (mapped) { blob.Advance(piece.Length); return; }
        }
        else if (decoder.ByteFallback && piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
                 && byte.TryParse(piece.AsSpan(3, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out byte value))
        {
            blob.GetSpan(1)[0] = value;
            blob.Advance(1);
            return;
        }
        string text = piece;
        foreach ((string from, string to) in decoder.Replacements) text = text.Replace(from, to, StringComparison.Ordinal);
        int written = Encoding.UTF8.GetBytes(text, blob.GetSpan(Encoding.UTF8.GetMaxByteCount(text.Length)));
        blob.Advance(written);
    }

    // ---- construction ----

    /// <summary>Builds from a parsed tokenizer.json whose model type is BPE.</summary>
    public static HfBpeBackend FromTokenizerJson(JsonElement root, TokenizerConfig config)
    {
        const string file = "tokenizer.json";
        JsonElement model = root.GetProperty("model");
        string type = model.TryGetProperty("type", out JsonElement t) ? t.GetString() ?? "" : "BPE";
        if (type != "BPE") throw new TokenizerException($"{file}: model type '{type}' is not supported (only BPE).");

        JsonElement vocabJson = model.GetProperty("vocab");
        var vocab = new Dictionary<string, int>(vocabJson.GetPropertyCount(), StringComparer.Ordinal);
        foreach (JsonProperty p in vocabJson.EnumerateObject()) vocab[p.Name] = p.Value.GetInt32();

        var merges = new List<string>();
        if (model.TryGetProperty("merges", out JsonElement mergesJson) && mergesJson.ValueKind == JsonValueKind.Array)
        {
            merges.Capacity = mergesJson.GetArrayLength();
            foreach (JsonElement m in mergesJson.EnumerateArray())
            {
                if (m.ValueKind == JsonValueKind.String) { merges.Add(m.GetString()!); continue; }
                string a = m[0].GetString()!, b = m[1].GetString()!;
                // The library takes merges as "a b" lines, so a token that itself holds a space cannot be given to it.
                if (a.Contains(' ') || b.Contains(' '))
                    throw new TokenizerException($"{file}: merge [\"{a}\", \"{b}\"] has a token containing a space, which Microsoft.ML.Tokenizers' BPE cannot represent.");
                merges.Add(string.Concat(a, " ", b));
            }
        }

        var added = new List<AddedToken>();
        if (root.TryGetProperty("added_tokens", out JsonElement addedJson) && addedJson.ValueKind == JsonValueKind.Array)
            foreach (JsonElement a in addedJson.EnumerateArray())
                added.Add(new AddedToken(a.GetProperty("id").GetInt32(), a.GetProperty("content").GetString()!,
                    Flag(a, "special"), Flag(a, "normalized"), Flag(a, "lstrip"), Flag(a, "rstrip")));

        var steps = new List<NormalizerStep>();
        if (root.TryGetProperty("normalizer", out JsonElement norm)) ReadNormalizer(norm, steps);

        var pre = new PreTokenizerBuilder();
        if (root.TryGetProperty("pre_tokenizer", out JsonElement preJson)) pre.Read(preJson);

        DecoderSpec decoder = (root.TryGetProperty("decoder", out JsonElement dec) && dec.ValueKind == JsonValueKind.Object
            ? ReadDecoder(dec)
            : new DecoderSpec(pre.ByteLevel, [], false, 0)) with { CleanUpSpaces = config.CleanUpTokenizationSpaces };

        var prefix = new List<int>();
        var suffix = new List<int>();
        if (root.TryGetProperty("post_processor", out JsonElement post)) ReadPostProcessor(post, prefix, suffix);

        string? unk = model.TryGetProperty("unk_token", out JsonElement u) && u.ValueKind == JsonValueKind.String ? u.GetString() : null;
        bool byteFallback = Flag(model, "byte_fallback");
        var backend = Create(file, vocab, merges, added, [], steps.ToArray(), pre, decoder, unk, byteFallback, Flag(model, "fuse_unk"),
            Flag(model, "ignore_merges"), OptionalString(model, "continuing_subword_prefix"), OptionalString(model, "end_of_word_suffix"),
            ApplyConfig(prefix, config.AddBos, config.BosToken, vocab, added), ApplyConfig(suffix, config.AddEos, config.EosToken, vocab, added));
        return backend;
    }

    /// <summary>GPT-2 style vocab.json + merges.txt: byte-level BPE with the GPT-2 regex.</summary>
    public static HfBpeBackend FromVocabAndMerges(byte[] vocabJson, byte[] mergesTxt, TokenizerConfig config)
    {
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        TokenizerConfig.Parse("vocab.json", vocabJson, root =>
        {
            foreach (JsonProperty p in root.EnumerateObject()) vocab[p.Name] = p.Value.GetInt32();
        });
        var merges = new List<string>();
        using (var reader = new StreamReader(new MemoryStream(mergesTxt), Encoding.UTF8))
        {
            int lineNumber = 0;
            while (reader.ReadLine() is string line)
            {
                lineNumber++;
                if (line.Length == 0 || line.StartsWith("#version", StringComparison.Ordinal)) continue;
                int space = line.IndexOf(' ');
                if (space <= 0 || space == line.Length - 1 || line.IndexOf(' ', space + 1) >= 0)
                    throw new TokenizerException($"merges.txt: line {lineNumber} is not two tokens separated by one space.");
                merges.Add(line);
            }
        }
        var added = new List<AddedToken>();
        foreach (AddedToken t in config.AddedTokens)
            added.Add(t with { Special = t.Special || config.SpecialContents.Contains(t.Content) });
        var pre = new PreTokenizerBuilder();
        pre.AddByteLevel(addPrefixSpace: false, useRegex: true);
        var decoder = new DecoderSpec(ByteLevel: true, [], false, 0, config.CleanUpTokenizationSpaces);
        return Create("vocab.json", vocab, merges, added, [], [], pre, decoder, null, false, false, false, null, null,
            ApplyConfig([], config.AddBos, config.BosToken, vocab, added), ApplyConfig([], config.AddEos, config.EosToken, vocab, added));
    }

    private static HfBpeBackend Create(string file, Dictionary<string, int> vocab, List<string> merges, List<AddedToken> added,
        int[] unmatchedSpecialIds, NormalizerStep[] steps, PreTokenizerBuilder pre, DecoderSpec decoder, string? unk, bool byteFallback, bool fuseUnk,
        bool ignoreMerges, string? continuingSubwordPrefix, string? endOfWordSuffix, int[] prefix, int[] suffix)
    {
        if (vocab.Count == 0) throw new TokenizerException($"{file}: the vocabulary is empty.");
        var normalizer = new HfNormalizer(steps, pre.Metaspace, pre.MetaspacePrepend, pre.ByteLevel, pre.ByteLevelPrefixSpace);
        char wordStart = pre.Metaspace ?? '\u2581';
        bool cutAtWordStarts = HfPreTokenizer.NoMergeCrossesWordStart(wordStart, vocab, merges, ignoreMerges,
            hasAffixes: !string.IsNullOrEmpty(continuingSubwordPrefix) || !string.IsNullOrEmpty(endOfWordSuffix));
        var preTokenizer = new HfPreTokenizer(pre.Stages.ToArray(), pre.ByteLevel, pre.OriginalTextStages, cutAtWordStarts ? wordStart : null);
        bool useUnk = unk is not null && vocab.ContainsKey(unk);
        BpeTokenizer bpe;
        try
        {
            bpe = BpeTokenizer.Create(new BpeOptions(vocab)
            {
                Merges = merges,
                Normalizer = normalizer,
                PreTokenizer = preTokenizer,
                UnknownToken = useUnk ? unk : null,
                FuseUnknownTokens = !byteFallback && fuseUnk,
                ContinuingSubwordPrefix = string.IsNullOrEmpty(continuingSubwordPrefix) ? null : continuingSubwordPrefix,
                EndOfWordSuffix = string.IsNullOrEmpty(endOfWordSuffix) ? null : endOfWordSuffix,
                // Byte-level mapping is done by HfNormalizer, before pre-tokenization, as Hugging Face orders it.
                ByteLevel = false,
            });
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentException)
        {
            throw new TokenizerException($"{file}: the BPE model is inconsistent ({ex.Message}).", ex);
        }
        // Position-dependent affixes change a word's symbols, which LongWordBpe does not model; such vocabularies keep the library's merging.
        LongWordBpe? longWords = string.IsNullOrEmpty(continuingSubwordPrefix) && string.IsNullOrEmpty(endOfWordSuffix)
            ? LongWordBpe.Create(vocab, merges, useUnk ? vocab[unk!] : -1, fuseUnknown: !byteFallback && fuseUnk)
            : null;
        return new HfBpeBackend(bpe, longWords, normalizer, preTokenizer, vocab, added, unmatchedSpecialIds, ignoreMerges, useUnk ? unk : null, byteFallback, prefix, suffix, decoder);
    }

    /// <summary>
    /// A SentencePiece BPE tokenizer.model, converted the way transformers' LlamaConverter writes tokenizer.json:
    /// every split of a piece into two pieces becomes a merge ranked by the piece's score, the dummy prefix and
    /// whitespace escaping become normalizer steps. The library's SentencePieceTokenizer is not used for BPE models
    /// because it does not reproduce sentencepiece on runs of spaces ("  two" → ▁ ▁▁ t… instead of ▁▁ ▁two) or on
    /// equal-score merges ("!!!!!!"), which the fixtures check.
    /// </summary>
    public static HfBpeBackend FromSentencePiece(SentencePieceModel spm, TokenizerConfig config)
    {
        const string file = "tokenizer.model";
        if (spm.TreatWhitespaceAsSuffix) throw new TokenizerException($"{file}: treat_whitespace_as_suffix models are not supported.");
        if (!spm.EscapeWhitespaces) throw new TokenizerException($"{file}: models without whitespace escaping are not supported.");
        var vocab = new Dictionary<string, int>(spm.Pieces.Count, StringComparer.Ordinal);
        var added = new List<AddedToken>();
        var unmatchedSpecial = new List<int>();
        for (int id = 0; id < spm.Pieces.Count; id++)
        {
            (string piece, _, SentencePieceModel.PieceType type) = spm.Pieces[id];
            vocab.TryAdd(piece, id);
            // sentencepiece matches user-defined pieces in the text but never control pieces (<s> stays plain text).
            if (type == SentencePieceModel.PieceType.UserDefined) added.Add(new AddedToken(id, piece, Special: false));
            else if (type is SentencePieceModel.PieceType.Control or SentencePieceModel.PieceType.Unknown) unmatchedSpecial.Add(id);
        }
        foreach (AddedToken t in config.AddedTokens)
            if (!added.Exists(a => a.Id == t.Id)) added.Add(t with { Special = t.Special || config.SpecialContents.Contains(t.Content) });

        var ranked = new List<(float Score, int Id, int Left, int Right, string Merge)>();
        for (int id = 0; id < spm.Pieces.Count; id++)
        {
            (string piece, float score, SentencePieceModel.PieceType type) = spm.Pieces[id];
            if (type != SentencePieceModel.PieceType.Normal) continue;
            for (int k = 1; k < piece.Length; k++)
            {
                if (vocab.TryGetValue(piece[..k], out int left) && vocab.TryGetValue(piece[k..], out int right)
                    && spm.Pieces[left].Type == SentencePieceModel.PieceType.Normal && spm.Pieces[right].Type == SentencePieceModel.PieceType.Normal)
                    ranked.Add((score, id, left, right, string.Concat(piece.AsSpan(0, k), " ", piece.AsSpan(k))));
            }
        }
        ranked.Sort((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Id != b.Id ? a.Id.CompareTo(b.Id) : a.Left != b.Left ? a.Left.CompareTo(b.Left) : a.Right.CompareTo(b.Right));
        var merges = new List<string>(ranked.Count);
        foreach (var m in ranked) merges.Add(m.Merge);

        var steps = new List<NormalizerStep>();
        switch (spm.NormalizerName)
        {
            case "" or "identity": break;
            case "nfkc" or "nmt_nfkc": steps.Add(new NormalizerStep.Unicode(NormalizationForm.FormKC)); break;
            case "nfkc_cf" or "nmt_nfkc_cf": steps.Add(new NormalizerStep.Unicode(NormalizationForm.FormKC)); steps.Add(new NormalizerStep.Lowercase()); break;
            default: throw new TokenizerException($"{file}: normalization rule '{spm.NormalizerName}' is not supported.");
        }
        if (spm.RemoveExtraWhitespaces)
        {
            steps.Add(new NormalizerStep.Strip(Left: true, Right: true));
            steps.Add(new NormalizerStep.ReplaceRegex(new Regex(" {2,}", RegexOptions.CultureInvariant), " "));
        }
        if (spm.AddDummyPrefix) steps.Add(new NormalizerStep.Prepend("\u2581"));
        steps.Add(new NormalizerStep.ReplaceString(" ", "\u2581"));

        var decoder = new DecoderSpec(false, [("\u2581", " ")], spm.ByteFallback, spm.AddDummyPrefix ? 1 : 0);
        int[] prefix = (config.AddBos ?? true) && spm.BosId >= 0 ? [spm.BosId] : [];
        int[] suffix = (config.AddEos ?? false) && spm.EosId >= 0 ? [spm.EosId] : [];
        string? unk = spm.UnkId >= 0 && spm.UnkId < spm.Pieces.Count ? spm.Pieces[spm.UnkId].Piece : null;
        return Create(file, vocab, merges, added, unmatchedSpecial.ToArray(), steps.ToArray(), new PreTokenizerBuilder(), decoder,
            unk, spm.ByteFallback, fuseUnk: true, ignoreMerges: false, null, null, prefix, suffix);
    }

    /// <summary>tokenizer_config.json's add_bos_token / add_eos_token, where given, decide the BOS / EOS part of the template.</summary>
    private static int[] ApplyConfig(List<int> fromTemplate, bool? add, string? token, Dictionary<string, int> vocab, List<AddedToken> added)
    {
        if (add is not bool wanted || token is null) return fromTemplate.ToArray();
        int? id = added.Find(t => t.Content == token)?.Id ?? (vocab.TryGetValue(token, out int v) ? v : null);
        if (id is null) return fromTemplate.ToArray();
        return wanted ? (fromTemplate.Contains(id.Value) ? fromTemplate.ToArray() : [id.Value, .. fromTemplate]) : fromTemplate.Where(i => i != id).ToArray();
    }

    private static bool Flag(JsonElement e, string name) => e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.True;
    private static string? OptionalString(JsonElement e, string name) => e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
    private static string TypeOf(JsonElement e) => e.GetProperty("type").GetString() ?? "";

    private static void ReadNormalizer(JsonElement n, List<NormalizerStep> steps)
    {
        if (n.ValueKind != JsonValueKind.Object) return;
        switch (TypeOf(n))
        {
            case "Sequence": foreach (JsonElement s in n.GetProperty("normalizers").EnumerateArray()) ReadNormalizer(s, steps); break;
            case "NFC": steps.Add(new NormalizerStep.Unicode(NormalizationForm.FormC)); break;
            case "NFD": steps.Add(new NormalizerStep.Unicode(NormalizationForm.FormD)); break;
            case "NFKC": steps.Add(new NormalizerStep.Unicode(NormalizationForm.FormKC)); break;
            case "NFKD": steps.Add(new NormalizerStep.Unicode(NormalizationForm.FormKD)); break;
            case "Lowercase": steps.Add(new NormalizerStep.Lowercase()); break;
            case "Prepend": steps.Add(new NormalizerStep.Prepend(n.GetProperty("prepend").GetString()!)); break;
            case "Strip": steps.Add(new NormalizerStep.Strip(Flag(n, "strip_left"), Flag(n, "strip_right"))); break;
            case "Replace":
                JsonElement pattern = n.GetProperty("pattern");
                string content = n.GetProperty("content").GetString()!;
                if (pattern.TryGetProperty("String", out JsonElement s1)) steps.Add(new NormalizerStep.ReplaceString(s1.GetString()!, content));
                else steps.Add(new NormalizerStep.ReplaceRegex(new Regex(pattern.GetProperty("Regex").GetString()!, RegexOptions.CultureInvariant), content));
                break;
            case var other: throw new TokenizerException($"tokenizer.json: normalizer type '{other}' is not supported.");
        }
    }

    private static DecoderSpec ReadDecoder(JsonElement d)
    {
        bool byteLevel = false, byteFallback = false;
        int strip = 0;
        var replacements = new List<(string, string)>();
        void Read(JsonElement e)
        {
            switch (TypeOf(e))
            {
                case "Sequence": foreach (JsonElement s in e.GetProperty("decoders").EnumerateArray()) Read(s); break;
                case "ByteLevel": byteLevel = true; break;
                case "ByteFallback": byteFallback = true; break;
                case "Fuse": break;
                case "Replace":
                    if (!e.GetProperty("pattern").TryGetProperty("String", out JsonElement p))
                        throw new TokenizerException("tokenizer.json: Replace decoder with a regex pattern is not supported.");
                    replacements.Add((p.GetString()!, e.GetProperty("content").GetString()!));
                    break;
                case "Strip":
                    if (e.GetProperty("content").GetString() != " ")
                        throw new TokenizerException("tokenizer.json: Strip decoder with content other than a space is not supported.");
                    strip = e.GetProperty("start").GetInt32();
                    break;
                case "Metaspace":
                    replacements.Add((e.GetProperty("replacement").GetString()!, " "));
                    if (ReadPrependScheme(e) != PrependScheme.Never) strip = 1;
                    break;
                case var other: throw new TokenizerException($"tokenizer.json: decoder type '{other}' is not supported.");
            }
        }
        Read(d);
        return new DecoderSpec(byteLevel, replacements.ToArray(), byteFallback, strip);
    }

    private static void ReadPostProcessor(JsonElement p, List<int> prefix, List<int> suffix)
    {
        if (p.ValueKind != JsonValueKind.Object) return;
        switch (TypeOf(p))
        {
            case "Sequence": foreach (JsonElement s in p.GetProperty("processors").EnumerateArray()) ReadPostProcessor(s, prefix, suffix); break;
            case "ByteLevel": break;
            case "RobertaProcessing" or "BertProcessing":
                prefix.Add(p.GetProperty("cls")[1].GetInt32());
                suffix.Add(p.GetProperty("sep")[1].GetInt32());
                break;
            case "TemplateProcessing":
                JsonElement specials = p.GetProperty("special_tokens");
                bool afterSequence = false;
                foreach (JsonElement item in p.GetProperty("single").EnumerateArray())
                {
                    if (item.TryGetProperty("Sequence", out _)) { afterSequence = true; continue; }
                    string name = item.GetProperty("SpecialToken").GetProperty("id").GetString()!;
                    foreach (JsonElement id in specials.GetProperty(name).GetProperty("ids").EnumerateArray())
                        (afterSequence ? suffix : prefix).Add(id.GetInt32());
                }
                break;
            case var other: throw new TokenizerException($"tokenizer.json: post-processor type '{other}' is not supported.");
        }
    }

    internal static PrependScheme ReadPrependScheme(JsonElement e)
    {
        if (e.TryGetProperty("prepend_scheme", out JsonElement s) && s.ValueKind == JsonValueKind.String)
            return s.GetString() switch { "always" => PrependScheme.Always, "first" => PrependScheme.First, _ => PrependScheme.Never };
        return Flag(e, "add_prefix_space") ? PrependScheme.Always : PrependScheme.Never;
    }

    /// <summary>Collects tokenizer.json pre-tokenizer stages.</summary>
    private sealed class PreTokenizerBuilder
    {
        private static readonly Lazy<Regex> Gpt2 = new(() => new Regex(HfPreTokenizer.Gpt2Pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant));

        public List<PreTokenizerStage> Stages { get; } = [];
        public bool ByteLevel { get; private set; }
        public bool ByteLevelPrefixSpace { get; private set; }
        public int OriginalTextStages { get; private set; }
        public char? Metaspace { get; private set; }
        public PrependScheme MetaspacePrepend { get; private set; }

        public void AddByteLevel(bool addPrefixSpace, bool useRegex)
        {
            ByteLevel = true;
            ByteLevelPrefixSpace = addPrefixSpace;
            if (useRegex) Stages.Add(new PreTokenizerStage.RegexStage(Gpt2.Value, SplitBehavior.Isolated, invert: false));
            OriginalTextStages = Stages.Count;
        }

        public void Read(JsonElement p)
        {
            if (p.ValueKind != JsonValueKind.Object) return;
            switch (TypeOf(p))
            {
                case "Sequence": foreach (JsonElement s in p.GetProperty("pretokenizers").EnumerateArray()) Read(s); break;
                case "ByteLevel":
                    AddByteLevel(Flag(p, "add_prefix_space"), !p.TryGetProperty("use_regex", out JsonElement r) || r.ValueKind != JsonValueKind.False);
                    break;
                case "Split":
                    JsonElement pattern = p.GetProperty("pattern");
                    string regex = pattern.TryGetProperty("String", out JsonElement s1) ? Regex.Escape(s1.GetString()!) : pattern.GetProperty("Regex").GetString()!;
                    Stages.Add(new PreTokenizerStage.RegexStage(new Regex(regex, RegexOptions.Compiled | RegexOptions.CultureInvariant), Behavior(p), Flag(p, "invert")));
                    break;
                case "Punctuation":
                    Stages.Add(new PreTokenizerStage.CharClassStage(PreTokenizerStage.IsPunctuation, Behavior(p), false));
                    break;
                case "Digits":
                    Stages.Add(new PreTokenizerStage.CharClassStage(PreTokenizerStage.IsNumeric, Flag(p, "individual_digits") ? SplitBehavior.Isolated : SplitBehavior.Contiguous, false));
                    break;
                case "Whitespace":
                    Stages.Add(new PreTokenizerStage.RegexStage(new Regex(@"\w+|[^\w\s]+", RegexOptions.CultureInvariant), SplitBehavior.Removed, invert: true));
                    break;
                case "WhitespaceSplit":
                    Stages.Add(new PreTokenizerStage.CharClassStage(Rune.IsWhiteSpace, SplitBehavior.Removed, false));
                    break;
                case "Metaspace":
                    char replacement = p.GetProperty("replacement").GetString()![0];
                    Metaspace = replacement;
                    MetaspacePrepend = ReadPrependScheme(p);
                    if (!p.TryGetProperty("split", out JsonElement split) || split.ValueKind != JsonValueKind.False)
                        Stages.Add(new PreTokenizerStage.CharClassStage(r => r.Value == replacement, SplitBehavior.MergedWithNext, false));
                    break;
                case var other: throw new TokenizerException($"tokenizer.json: pre-tokenizer type '{other}' is not supported.");
            }
        }

        private static SplitBehavior Behavior(JsonElement p) =>
            p.TryGetProperty("behavior", out JsonElement b) && Enum.TryParse(b.GetString(), out SplitBehavior v) ? v : SplitBehavior.Isolated;
    }
}

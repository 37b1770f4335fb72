using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace OnDeviceLlm.Runtime.Tokenization;

/// <summary>Hugging Face's SplitDelimiterBehavior.</summary>
internal enum SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

/// <summary>One stage of a Hugging Face pre-tokenizer: splits every current piece further.</summary>
internal abstract class PreTokenizerStage
{
    protected PreTokenizerStage(SplitBehavior behavior, bool invert) { Behavior = behavior; Invert = invert; }

    public SplitBehavior Behavior { get; }
    public bool Invert { get; }

    /// <summary>Adds the delimiter matches found in text (relative offsets, sorted, non-overlapping).</summary>
    protected abstract void FindMatches(ReadOnlySpan<char> text, List<(int Start, int End)> matches);

    public void Split(ReadOnlySpan<char> text, List<(int Offset, int Length)> input, List<(int Offset, int Length)> output, List<(int Start, int End)> scratch)
    {
        foreach ((int offset, int length) in input)
        {
            scratch.Clear();
            FindMatches(text.Slice(offset, length), scratch);
            if (Invert) Complement(scratch, length);
            Emit(scratch, offset, length, output);
        }
    }

    private static void Complement(List<(int Start, int End)> matches, int length)
    {
        int count = matches.Count, prev = 0;
        for (int i = 0; i < count; i++)
        {
            (int s, int e) = matches[i];
            if (s > prev) matches.Add((prev, s));
            prev = e;
        }
        if (prev < length) matches.Add((prev, length));
        matches.RemoveRange(0, count);
    }

    private void Emit(List<(int Start, int End)> m, int offset, int length, List<(int Offset, int Length)> output)
    {
        void Add(int s, int e) { if (e > s) output.Add((offset + s, e - s)); }
        int prev = 0;
        switch (Behavior)
        {
            case SplitBehavior.Removed:
                foreach ((int s, int e) in m) { Add(prev, s); prev = e; }
                Add(prev, length);
                break;
            case SplitBehavior.Isolated:
                foreach ((int s, int e) in m) { Add(prev, s); Add(s, e); prev = e; }
                Add(prev, length);
                break;
            case SplitBehavior.Contiguous:
                for (int i = 0; i < m.Count; i++)
                {
                    (int s, int e) = m[i];
                    while (i + 1 < m.Count && m[i + 1].Start == e) e = m[++i].End;
                    Add(prev, s); Add(s, e); prev = e;
                }
                Add(prev, length);
                break;
            case SplitBehavior.MergedWithPrevious:
                foreach ((int _, int e) in m) { Add(prev, e); prev = e; }
                Add(prev, length);
                break;
            case SplitBehavior.MergedWithNext:
                foreach ((int s, int _) in m) { Add(prev, s); prev = s; }
                Add(prev, length);
                break;
        }
    }

    public sealed class RegexStage(Regex regex, SplitBehavior behavior, bool invert) : PreTokenizerStage(behavior, invert)
    {
        protected override void FindMatches(ReadOnlySpan<char> text, List<(int Start, int End)> matches)
        {
            foreach (ValueMatch match in regex.EnumerateMatches(text))
                if (match.Length > 0) matches.Add((match.Index, match.Index + match.Length));
        }
    }

    /// <summary>A per-character class (Punctuation, Digits, WhitespaceSplit, Metaspace's ▁), judged per Unicode scalar like Rust's char.</summary>
    public sealed class CharClassStage(Func<Rune, bool> isDelimiter, SplitBehavior behavior, bool invert) : PreTokenizerStage(behavior, invert)
    {
        protected override void FindMatches(ReadOnlySpan<char> text, List<(int Start, int End)> matches)
        {
            int i = 0;
            while (i < text.Length)
            {
                Rune.DecodeFromUtf16(text.Slice(i), out Rune rune, out int used);
                if (isDelimiter(rune)) matches.Add((i, i + used));
                i += used;
            }
        }
    }

    // Rust's char::is_ascii_punctuation || char::is_punctuation (Unicode P*), as HF's Punctuation uses.
    public static bool IsPunctuation(Rune r) => (r.IsAscii && char.IsAsciiLetterOrDigit((char)r.Value) is false && r.Value > 0x20 && r.Value < 0x7F)
        || Rune.GetUnicodeCategory(r) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
            or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;

    // Rust's char::is_numeric (Nd, Nl, No), as HF's Digits uses.
    public static bool IsNumeric(Rune r) => Rune.GetUnicodeCategory(r) is UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;
}

/// <summary>
/// A Hugging Face pre-tokenizer pipeline as a library <see cref="PreTokenizer"/>. For byte-level models the text it
/// receives is already in the byte-level alphabet (see <see cref="HfNormalizer"/>); the stages up to and including
/// ByteLevel's regex run on the original text (decoded back), the later ones on the byte-level characters, which
/// is where Hugging Face runs them.
/// </summary>
internal sealed class HfPreTokenizer : PreTokenizer
{
    // The GPT-2 pattern used by Hugging Face's ByteLevel pre-tokenizer.
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly PreTokenizerStage[] _stages;
    private readonly int _originalTextStages;
    private readonly bool _byteLevel;
    private readonly char? _wordStart;

    /// <param name="originalTextStages">For byte-level models, how many leading stages see the original text.</param>
    /// <param name="wordStart">
    /// SentencePiece-style models have no pre-tokenizer, so the whole text would be merged as one word, which the
    /// library does in time quadratic in its length. Given the word-start char (▁), every piece is also cut before
    /// each ▁ that follows another char; the caller passes it only when <see cref="NoMergeCrossesWordStart"/> proved
    /// that no merge can join across such a cut, so the ids are unchanged.
    /// </param>
    public HfPreTokenizer(PreTokenizerStage[] stages, bool byteLevel, int originalTextStages, char? wordStart = null)
    {
        _stages = stages;
        _byteLevel = byteLevel;
        _originalTextStages = byteLevel ? originalTextStages : 0;
        _wordStart = wordStart;
    }

    /// <summary>
    /// Whether a cut between a char other than <paramref name="wordStart"/> and a following <paramref name="wordStart"/>
    /// is invisible to BPE. A token spanning the cut could only come from a merge whose left part ends in another
    /// char and whose right part starts with the word-start char; without such a merge the pair at the cut is never
    /// in the merge table, so the merges on either side happen exactly as they would in the whole text (the
    /// priority order inside each side is unchanged). The word-start char must be in the vocabulary, or it could
    /// be fused with an unknown char before it; prefixes and suffixes that depend on the word's position rule it out.
    /// With <paramref name="wholeWordsFirst"/> (ignore_merges) a word found whole in the vocabulary skips merging,
    /// so no vocabulary entry may span a cut either.
    /// </summary>
    public static bool NoMergeCrossesWordStart(char wordStart, IReadOnlyDictionary<string, int> vocab, List<string> merges, bool wholeWordsFirst,
        bool hasAffixes)
    {
        if (hasAffixes || !vocab.ContainsKey(wordStart.ToString())) return false;
        foreach (string merge in merges)
        {
            int space = merge.IndexOf(' ');
            if (space > 0 && space + 1 < merge.Length && merge[space - 1] != wordStart && merge[space + 1] == wordStart) return false;
        }
        if (wholeWordsFirst)
            foreach (string token in vocab.Keys)
                if (HasCut(token, wordStart)) return false;
        return true;
    }

    private static bool HasCut(string s, char wordStart)
    {
        for (int i = 1; i < s.Length; i++)
            if (s[i] == wordStart && s[i - 1] != wordStart) return true;
        return false;
    }

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => PreTokenize(text.AsSpan());

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text)
    {
        var pieces = new List<(int Offset, int Length)>();
        if (text.IsEmpty) return pieces;
        pieces.Add((0, text.Length));
        if (_stages.Length == 0 && _wordStart is null) return pieces;
        var next = new List<(int Offset, int Length)>();
        var scratch = new List<(int Start, int End)>();
        int stage = 0;
        if (_originalTextStages > 0) RunOnOriginalText(text, ref pieces, ref next, scratch, ref stage);
        for (; stage < _stages.Length; stage++)
        {
            next.Clear();
            _stages[stage].Split(text, pieces, next, scratch);
            (pieces, next) = (next, pieces);
        }
        if (_wordStart is char wordStart)
        {
            next.Clear();
            foreach ((int offset, int length) in pieces) CutBeforeWordStarts(text, offset, offset + length, wordStart, next);
            pieces = next;
        }
        return pieces;
    }

    private static void CutBeforeWordStarts(ReadOnlySpan<char> text, int start, int end, char wordStart, List<(int Offset, int Length)> output)
    {
        int from = start + 1;
        while (from < end)
        {
            int found = text.Slice(from, end - from).IndexOf(wordStart);
            if (found < 0) break;
            int cut = from + found;
            if (text[cut - 1] != wordStart)
            {
                output.Add((start, cut - start));
                start = cut;
            }
            from = cut + 1;
        }
        output.Add((start, end - start));
    }

    private void RunOnOriginalText(ReadOnlySpan<char> byteText, ref List<(int, int)> pieces, ref List<(int, int)> next, List<(int, int)> scratch, ref int stage)
    {
        byte[] bytes = ArrayPool<byte>.Shared.Rent(byteText.Length);
        char[] chars = ArrayPool<char>.Shared.Rent(byteText.Length);
        int[] byteOffset = ArrayPool<int>.Shared.Rent(byteText.Length + 1);
        try
        {
            for (int i = 0; i < byteText.Length; i++)
            {
                int b = ByteLevelAlphabet.ToByte(byteText[i]);
                if (b < 0) return; // not byte-level text (Inner used on raw text): the later stages still apply
                bytes[i] = (byte)b;
            }
            int n = Encoding.UTF8.GetChars(bytes.AsSpan(0, byteText.Length), chars);
            int pos = 0;
            for (int j = 0; j < n; j++)
            {
                byteOffset[j] = pos;
                char c = chars[j];
                pos += c < 0x80 ? 1 : c < 0x800 ? 2 : char.IsHighSurrogate(c) ? 4 : char.IsLowSurrogate(c) ? 0 : 3;
            }
            byteOffset[n] = pos;
            ReadOnlySpan<char> original = chars.AsSpan(0, n);
            pieces.Clear();
            pieces.Add((0, n));
            for (; stage < _originalTextStages; stage++)
            {
                next.Clear();
                _stages[stage].Split(original, pieces, next, scratch);
                (pieces, next) = (next, pieces);
            }
            for (int k = 0; k < pieces.Count; k++)
            {
                (int o, int l) = pieces[k];
                int start = byteOffset[o];
                pieces[k] = (start, byteOffset[o + l] - start);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
            ArrayPool<char>.Shared.Return(chars);
            ArrayPool<int>.Shared.Return(byteOffset);
        }
    }
}

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

    /// <param name="originalTextStages">For byte-level models, how many leading stages see the original text.</param>
    public HfPreTokenizer(PreTokenizerStage[] stages, bool byteLevel, int originalTextStages)
    {
        _stages = stages;
        _byteLevel = byteLevel;
        _originalTextStages = byteLevel ? originalTextStages : 0;
    }

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => PreTokenize(text.AsSpan());

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text)
    {
        var pieces = new List<(int Offset, int Length)>();
        if (text.IsEmpty) return pieces;
        pieces.Add((0, text.Length));
        if (_stages.Length == 0) return pieces;
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
        return pieces;
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

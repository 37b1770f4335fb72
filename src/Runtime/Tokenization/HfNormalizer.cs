using System.Buffers;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace OnDeviceLlm.Runtime.Tokenization;

/// <summary>How a Metaspace pre-tokenizer (or the legacy add_prefix_space flag) prepends its replacement char.</summary>
internal enum PrependScheme { Never, First, Always }

/// <summary>One step of a Hugging Face tokenizer.json normalizer (the library has no tokenizer.json loader).</summary>
internal abstract record NormalizerStep
{
    public abstract string Apply(string text);

    public sealed record Unicode(NormalizationForm Form) : NormalizerStep
    {
        public override string Apply(string text) => text.IsNormalized(Form) ? text : text.Normalize(Form);
    }

    public sealed record Lowercase : NormalizerStep
    {
        public override string Apply(string text) => text.ToLowerInvariant();
    }

    public sealed record ReplaceString(string Pattern, string Content) : NormalizerStep
    {
        public override string Apply(string text) => text.Replace(Pattern, Content, StringComparison.Ordinal);
    }

    public sealed record ReplaceRegex(Regex Pattern, string Content) : NormalizerStep
    {
        public override string Apply(string text) => Pattern.Replace(text, Content);
    }

    /// <summary>Hugging Face's Prepend normalizer: unconditional on non-empty text (Llama 2's dummy prefix).</summary>
    public sealed record Prepend(string Prefix) : NormalizerStep
    {
        public override string Apply(string text) => text.Length == 0 ? text : Prefix + text;
    }

    public sealed record Strip(bool Left, bool Right) : NormalizerStep
    {
        public override string Apply(string text) => Left && Right ? text.Trim() : Left ? text.TrimStart() : Right ? text.TrimEnd() : text;
    }
}

/// <summary>
/// The text transformation a Hugging Face tokenizer applies before its BPE model: the normalizer steps, then the
/// per-piece parts of the pre-tokenizer that rewrite text (Metaspace's ▁ and prefix, ByteLevel's prefix space and
/// byte → char mapping). Split into two calls because added tokens are matched between them.
/// </summary>
internal sealed class HfNormalizer : Normalizer
{
    private readonly NormalizerStep[] _steps;
    private readonly char? _metaspace;
    private readonly PrependScheme _metaspacePrepend;
    private readonly bool _byteLevel;
    private readonly bool _byteLevelPrefixSpace;

    public HfNormalizer(NormalizerStep[] steps, char? metaspace, PrependScheme metaspacePrepend, bool byteLevel, bool byteLevelPrefixSpace)
    {
        _steps = steps;
        _metaspace = metaspace;
        _metaspacePrepend = metaspacePrepend;
        _byteLevel = byteLevel;
        _byteLevelPrefixSpace = byteLevelPrefixSpace;
    }

    public bool HasSteps => _steps.Length > 0;

    /// <summary>The tokenizer.json "normalizer" steps only (also applied to normalized added tokens' content).</summary>
    public string NormalizeText(string text)
    {
        foreach (NormalizerStep step in _steps) text = step.Apply(text);
        return text;
    }

    /// <summary>The pre-tokenizer rewrites for one piece free of added tokens; the result is in the model's alphabet.</summary>
    public string PreparePiece(ReadOnlySpan<char> piece, bool atTextStart)
    {
        if (_metaspace is char meta)
        {
            bool prepend = _metaspacePrepend == PrependScheme.Always || (_metaspacePrepend == PrependScheme.First && atTextStart);
            bool addPrefix = prepend && (piece.Length == 0 || piece[0] != meta);
            var sb = new StringBuilder(piece.Length + 1);
            if (addPrefix) sb.Append(meta);
            foreach (char c in piece) sb.Append(c == ' ' ? meta : c);
            return sb.ToString();
        }
        if (_byteLevel) return ToByteLevel(piece, _byteLevelPrefixSpace && (piece.Length == 0 || piece[0] != ' '));
        return piece.ToString();
    }

    /// <summary>UTF-8 bytes of the text written as GPT-2 byte-level characters.</summary>
    public static string ToByteLevel(ReadOnlySpan<char> text, bool prefixSpace)
    {
        int max = Encoding.UTF8.GetMaxByteCount(text.Length) + 1;
        byte[] rented = ArrayPool<byte>.Shared.Rent(max);
        try
        {
            int n = 0;
            if (prefixSpace) rented[n++] = (byte)' ';
            n += Encoding.UTF8.GetBytes(text, rented.AsSpan(n));
            char[] map = ByteLevelAlphabet.ByteToChar;
            return string.Create(n, rented, (dst, bytes) =>
            {
                for (int i = 0; i < dst.Length; i++) dst[i] = map[bytes[i]];
            });
        }
        finally { ArrayPool<byte>.Shared.Return(rented); }
    }

    public override string Normalize(string original) => PreparePiece(NormalizeText(original), atTextStart: true);

    public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
}

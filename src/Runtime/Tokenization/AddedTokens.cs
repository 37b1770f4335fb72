using System.Buffers;

namespace OnDeviceLlm.Runtime.Tokenization;

/// <summary>A Hugging Face added token: matched as a whole in the text before the model sees it.</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool Normalized = false, bool LStrip = false, bool RStrip = false);

/// <summary>
/// Leftmost-longest matching of added tokens, as Hugging Face's AddedVocabulary does. The library only recognizes
/// special tokens that a pre-tokenizer already isolated, and has no notion of lstrip/rstrip or normalized tokens.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly SearchValues<char> _firstChars;
    private readonly Dictionary<char, (string Text, AddedToken Token)[]> _byFirstChar;

    private AddedTokenMatcher(SearchValues<char> firstChars, Dictionary<char, (string, AddedToken)[]> byFirstChar)
    {
        _firstChars = firstChars;
        _byFirstChar = byFirstChar;
    }

    /// <summary>Null when there is nothing to match. <paramref name="textOf"/> gives the form a token is matched in.</summary>
    public static AddedTokenMatcher? Create(IEnumerable<AddedToken> tokens, Func<AddedToken, string> textOf)
    {
        var groups = new Dictionary<char, List<(string, AddedToken)>>();
        foreach (AddedToken token in tokens)
        {
            string text = textOf(token);
            if (text.Length == 0) continue;
            if (!groups.TryGetValue(text[0], out var list)) groups[text[0]] = list = [];
            list.Add((text, token));
        }
        if (groups.Count == 0) return null;
        var byFirst = new Dictionary<char, (string, AddedToken)[]>();
        foreach (var (c, list) in groups)
        {
            list.Sort((a, b) => b.Item1.Length.CompareTo(a.Item1.Length));
            byFirst[c] = list.ToArray();
        }
        return new AddedTokenMatcher(SearchValues.Create(groups.Keys.ToArray()), byFirst);
    }

    /// <summary>Finds the next added token at or after <paramref name="from"/>; start/end include stripped whitespace.</summary>
    public bool FindNext(ReadOnlySpan<char> text, int from, out int start, out int end, out AddedToken token)
    {
        int i = from;
        while (i < text.Length)
        {
            int hit = text.Slice(i).IndexOfAny(_firstChars);
            if (hit < 0) break;
            i += hit;
            foreach ((string candidate, AddedToken t) in _byFirstChar[text[i]])
            {
                if (!text.Slice(i).StartsWith(candidate, StringComparison.Ordinal)) continue;
                start = i;
                end = i + candidate.Length;
                if (t.LStrip) while (start > from && char.IsWhiteSpace(text[start - 1])) start--;
                if (t.RStrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
                token = t;
                return true;
            }
            i++;
        }
        start = end = text.Length;
        token = null!;
        return false;
    }
}

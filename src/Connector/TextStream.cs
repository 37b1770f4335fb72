using System.Runtime.InteropServices;
using System.Text;
using OnDeviceLlm.Runtime.Tokenization;

namespace OnDeviceLlm.Connector;

/// <summary>
/// Turns generated tokens into text pieces as soon as they are final: a token that ends inside a multi-byte
/// character (its decode ends in U+FFFD) is held until the character completes, and text that could be the
/// start of a stop sequence is held until it is known not to be one. A stop sequence ends the stream with
/// nothing of it (or after it) emitted. Decoding re-reads only a short window of recent tokens (the scheme of
/// vLLM's incremental detokenizer): the window starts at the token before the last emitted piece, so tokenizers
/// whose decode depends on the neighbouring token (SentencePiece's leading space) decode each piece in context.
/// </summary>
internal sealed class TextStream
{
    private readonly TextTokenizer _tokenizer;
    private readonly IReadOnlyList<string> _stops;
    private readonly List<int> _ids = new(64);
    private readonly StringBuilder _pending = new();
    private int _prefixOffset, _readOffset;

    public TextStream(TextTokenizer tokenizer, IReadOnlyList<string> stopSequences)
    {
        _tokenizer = tokenizer;
        _stops = stopSequences;
    }

    /// <summary>True once a stop sequence appeared; nothing more is emitted.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds a token and returns the text that became final (often empty).</summary>
    public string Push(int token)
    {
        if (Stopped) return "";
        _ids.Add(token);
        var ids = CollectionsMarshal.AsSpan(_ids);
        string before = _tokenizer.Decode(ids[_prefixOffset.._readOffset], skipSpecialTokens: true);
        string now = _tokenizer.Decode(ids[_prefixOffset..], skipSpecialTokens: true);
        if (now.Length <= before.Length || now[^1] == '\uFFFD') return "";
        _prefixOffset = _readOffset;
        _readOffset = _ids.Count;
        return Filter(now[before.Length..], final: false);
    }

    /// <summary>At the end of generation: returns everything still held, incomplete characters included (as U+FFFD).</summary>
    public string Flush()
    {
        if (Stopped) return "";
        var ids = CollectionsMarshal.AsSpan(_ids);
        string before = _tokenizer.Decode(ids[_prefixOffset.._readOffset], skipSpecialTokens: true);
        string now = _tokenizer.Decode(ids[_prefixOffset..], skipSpecialTokens: true);
        _prefixOffset = _readOffset = _ids.Count;
        return Filter(now.Length > before.Length ? now[before.Length..] : "", final: true);
    }

    private string Filter(string piece, bool final)
    {
        if (_stops.Count == 0) return piece;
        _pending.Append(piece);
        string pending = _pending.ToString();
        int stopAt = -1;
        foreach (string stop in _stops)
        {
            int at = pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (stopAt < 0 || at < stopAt)) stopAt = at;
        }
        if (stopAt >= 0)
        {
            Stopped = true;
            _pending.Clear();
            return pending[..stopAt];
        }
        int hold = final ? 0 : HeldSuffix(pending);
        _pending.Clear().Append(pending, pending.Length - hold, hold);
        return pending[..^hold];
    }

    /// <summary>The length of the longest suffix of <paramref name="text"/> that a stop sequence starts with.</summary>
    private int HeldSuffix(string text)
    {
        int best = 0;
        foreach (string stop in _stops)
        {
            for (int n = Math.Min(stop.Length - 1, text.Length); n > best; n--)
            {
                if (text.AsSpan(text.Length - n).SequenceEqual(stop.AsSpan(0, n))) { best = n; break; }
            }
        }
        return best;
    }
}

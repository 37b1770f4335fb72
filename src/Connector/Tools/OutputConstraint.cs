namespace OnDeviceLlm.Connector.Tools;

/// <summary>
/// A character-level grammar the output must follow. Each step the client masks every token whose text the
/// grammar would reject, so whatever the model's logits, the output stays a prefix of a valid sentence; when the
/// token budget runs out first, <see cref="Completion"/> closes it. Implementations keep their state in fixed
/// buffers so that testing a token (copy, then feed) allocates nothing.
/// </summary>
internal abstract class OutputConstraint
{
    /// <summary>Feeds one character; false (leaving the state undefined) when the grammar rejects it.</summary>
    public abstract bool Feed(char c);

    /// <summary>Whether the text so far is a whole sentence that nothing but whitespace may follow.</summary>
    public abstract bool IsComplete { get; }

    /// <summary>The shortest text that makes the output so far a whole sentence.</summary>
    public abstract string Completion();

    /// <summary>Makes this state equal to <paramref name="other"/>'s (same concrete type).</summary>
    public abstract void CopyFrom(OutputConstraint other);

    /// <summary>A fresh instance of the same grammar, used as scratch space for trial feeds.</summary>
    public abstract OutputConstraint CreateScratch();

    public bool FeedAll(ReadOnlySpan<char> text)
    {
        foreach (char c in text)
            if (!Feed(c)) return false;
        return true;
    }
}

/// <summary>Applies a constraint to logits: the text of every token, and the mask computed from them.</summary>
internal sealed class ConstrainedDecoding
{
    private readonly string?[] _tokenTexts;
    private readonly OutputConstraint _state, _scratch;

    public ConstrainedDecoding(string?[] tokenTexts, OutputConstraint constraint)
    {
        _tokenTexts = tokenTexts;
        _state = constraint;
        _scratch = constraint.CreateScratch();
    }

    public bool IsComplete => _state.IsComplete;

    public string Completion() => _state.Completion();

    /// <summary>Sets the logit of every token the grammar rejects to -infinity; false when no token is allowed.</summary>
    public bool Mask(Span<float> logits)
    {
        bool any = false;
        for (int id = 0; id < logits.Length; id++)
        {
            string? text = id < _tokenTexts.Length ? _tokenTexts[id] : null;
            bool allowed = false;
            if (!string.IsNullOrEmpty(text) && !float.IsNegativeInfinity(logits[id]))
            {
                _scratch.CopyFrom(_state);
                allowed = _scratch.FeedAll(text);
            }
            if (allowed) any = true;
            else logits[id] = float.NegativeInfinity;
        }
        return any;
    }

    /// <summary>Commits a sampled token (one that <see cref="Mask"/> allowed).</summary>
    public void Accept(int token)
    {
        if (!_state.FeedAll(_tokenTexts[token]))
            throw new InvalidOperationException($"Token {token} was sampled although the output grammar rejects it.");
    }
}

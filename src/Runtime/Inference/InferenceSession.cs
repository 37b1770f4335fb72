namespace OnDeviceLlm.Runtime.Inference;

/// <summary>
/// One sequence being evaluated: its KV cache, its position and its buffers. Prefill runs the whole
/// input in one pass (matrix-matrix); decode runs one token. Not thread-safe: one session per conversation.
/// </summary>
public sealed class InferenceSession
{
    private readonly Transformer _transformer;
    private readonly KvCache _cache;
    private readonly ForwardScratch _scratch;
    private readonly float[] _logits;

    public InferenceSession(Transformer transformer, int? contextLength = null)
    {
        var c = transformer.Config;
        int capacity = contextLength ?? c.ContextLength;
        if (capacity <= 0 || capacity > c.ContextLength)
            throw new ArgumentOutOfRangeException(nameof(contextLength), $"The context length must be between 1 and the model's {c.ContextLength}.");
        _transformer = transformer;
        _cache = new KvCache(c.NumLayers, capacity, c.NumKvHeads * c.HeadDim);
        _scratch = new ForwardScratch(c, capacity);
        _logits = new float[c.VocabSize];
    }

    /// <summary>Positions evaluated so far (the length of the cached sequence).</summary>
    public int Position => _cache.Length;
    /// <summary>Positions this session can hold.</summary>
    public int ContextLength => _cache.Capacity;
    public int VocabSize => _logits.Length;

    /// <summary>Evaluates <paramref name="tokens"/> after what is cached and returns the logits of the last one.</summary>
    public ReadOnlySpan<float> Prefill(ReadOnlySpan<int> tokens)
    {
        Validate(tokens);
        _transformer.Forward(tokens, _cache, _scratch, _logits);
        return _logits;
    }

    /// <summary>Evaluates one token; the same computation as a one-token prefill.</summary>
    public ReadOnlySpan<float> Decode(int token)
    {
        Span<int> one = [token];
        Validate(one);
        _transformer.Forward(one, _cache, _scratch, _logits);
        return _logits;
    }

    /// <summary>Evaluates <paramref name="tokens"/> and writes the logits of every position, [tokens.Length, vocab].</summary>
    public void Evaluate(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (logits.Length < (long)tokens.Length * VocabSize)
            throw new ArgumentException($"The logits buffer needs {tokens.Length} × {VocabSize} values.", nameof(logits));
        Validate(tokens);
        _transformer.Forward(tokens, _cache, _scratch, logits[..(tokens.Length * VocabSize)]);
    }

    /// <summary>Forgets everything; the next prefill starts at position 0.</summary>
    public void Reset() => _cache.Truncate(0);

    /// <summary>Keeps the first <paramref name="length"/> positions (a shared prefix) and forgets the rest.</summary>
    public void Truncate(int length) => _cache.Truncate(length);

    private void Validate(ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty) throw new ArgumentException("At least one token is required.", nameof(tokens));
        if (Position + tokens.Length > ContextLength)
            throw new InferenceException(
                $"The input needs {Position + tokens.Length} positions but the context holds {ContextLength}.");
        for (int i = 0; i < tokens.Length; i++)
        {
            if ((uint)tokens[i] >= (uint)VocabSize)
                throw new InferenceException($"Token id {tokens[i]} at index {i} is outside the vocabulary (0 to {VocabSize - 1}).");
        }
    }
}

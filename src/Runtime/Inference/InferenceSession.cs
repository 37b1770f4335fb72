namespace OnDeviceLlm.Runtime.Inference;

/// <summary>
/// A forward pass together with the KV state it appends to: <see cref="Transformer"/> with its <see cref="KvCache"/>
/// on the CPU, or a device-resident sequence (<see cref="CudaSequence"/>).
/// </summary>
public interface IForwardPass : IDisposable
{
    /// <summary>Positions cached so far.</summary>
    int Length { get; }
    int Capacity { get; }
    int VocabSize { get; }
    /// <summary>
    /// Runs <paramref name="tokens"/> at positions Length… and caches them. Writes the logits of the last position,
    /// or of every position when <paramref name="logits"/> holds tokens.Length rows.
    /// </summary>
    void Forward(ReadOnlySpan<int> tokens, Span<float> logits);
    /// <summary>Forgets positions from <paramref name="length"/> on.</summary>
    void Truncate(int length);
    /// <summary>
    /// A buffer of one row of logits that this pass fills fastest when <see cref="Forward"/> is given it (a device pass
    /// copies into it directly); null where any buffer does as well.
    /// </summary>
    float[]? LogitsBuffer => null;
}

/// <summary>
/// One sequence being evaluated: its KV cache, its position and its buffers. Prefill runs the whole
/// input in one pass (matrix-matrix); decode runs one token. Not thread-safe: one session per conversation.
/// Dispose it to free device memory at once when its forward pass runs on a GPU.
/// </summary>
public sealed class InferenceSession : IDisposable
{
    private readonly IForwardPass _pass;
    internal IForwardPass Pass => _pass;
    private readonly float[] _logits;

    /// <summary>A CPU session; <paramref name="kvCacheType"/> Auto picks the transformer's <see cref="Transformer.DefaultKvCacheType"/>.</summary>
    public InferenceSession(Transformer transformer, int? contextLength = null, KvCacheType kvCacheType = KvCacheType.Auto)
        : this(new CpuForwardPass(transformer, contextLength, kvCacheType)) { }

    public InferenceSession(IForwardPass pass)
    {
        ArgumentNullException.ThrowIfNull(pass);
        _pass = pass;
        _logits = pass.LogitsBuffer ?? new float[pass.VocabSize];
    }

    /// <summary>Positions evaluated so far (the length of the cached sequence).</summary>
    public int Position => _pass.Length;
    /// <summary>Positions this session can hold.</summary>
    public int ContextLength => _pass.Capacity;
    public int VocabSize => _logits.Length;

    /// <summary>Evaluates <paramref name="tokens"/> after what is cached and returns the logits of the last one.</summary>
    public ReadOnlySpan<float> Prefill(ReadOnlySpan<int> tokens)
    {
        Validate(tokens);
        _pass.Forward(tokens, _logits);
        return _logits;
    }

    /// <summary>Evaluates one token; the same computation as a one-token prefill.</summary>
    public ReadOnlySpan<float> Decode(int token)
    {
        Span<int> one = [token];
        Validate(one);
        _pass.Forward(one, _logits);
        return _logits;
    }

    /// <summary>Evaluates <paramref name="tokens"/> and writes the logits of every position, [tokens.Length, vocab].</summary>
    public void Evaluate(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (logits.Length < (long)tokens.Length * VocabSize)
            throw new ArgumentException($"The logits buffer needs {tokens.Length} × {VocabSize} values.", nameof(logits));
        Validate(tokens);
        _pass.Forward(tokens, logits[..(tokens.Length * VocabSize)]);
    }

    /// <summary>Forgets everything; the next prefill starts at position 0.</summary>
    public void Reset() => _pass.Truncate(0);

    /// <summary>Keeps the first <paramref name="length"/> positions (a shared prefix) and forgets the rest.</summary>
    public void Truncate(int length) => _pass.Truncate(length);

    public void Dispose() => _pass.Dispose();

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

/// <summary>The CPU forward pass: <see cref="Transformer"/> over a managed <see cref="KvCache"/>.</summary>
internal sealed class CpuForwardPass : IForwardPass
{
    private readonly Transformer _transformer;
    private readonly KvCache _cache;
    private readonly ForwardScratch _decodeScratch;

    public CpuForwardPass(Transformer transformer, int? contextLength, KvCacheType kvCacheType)
    {
        var c = transformer.Config;
        int capacity = contextLength ?? c.ContextLength;
        if (capacity <= 0 || capacity > c.ContextLength)
            throw new ArgumentOutOfRangeException(nameof(contextLength), $"The context length must be between 1 and the model's {c.ContextLength}.");
        _transformer = transformer;
        var type = kvCacheType == KvCacheType.Auto ? transformer.DefaultKvCacheType : kvCacheType;
        _cache = new KvCache(c.NumLayers, capacity, c.NumKvHeads * c.HeadDim, type);
        _decodeScratch = new ForwardScratch(c);
    }

    public int Length => _cache.Length;
    public int Capacity => _cache.Capacity;
    public int VocabSize => _transformer.Config.VocabSize;
    /// <summary>
    /// Prompt rows per forward call. Activations scale with the rows in flight (a Gemma-2B FFN holds 128 KiB per row),
    /// so long prompts run in chunks: memory stays bounded, and 256 rows already reuse each weight panel enough.
    /// </summary>
    internal const int PrefillChunk = 256;

    public void Forward(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (tokens.Length == 1)
        {
            _transformer.Forward(tokens, _cache, _decodeScratch, logits[..VocabSize]);
            return;
        }
        // Prompt-sized buffers are borrowed for the prefill only, so a session waiting between turns holds one row's.
        var scratch = _transformer.RentPrefillScratch();
        try
        {
            int vocab = VocabSize;
            bool everyPosition = logits.Length >= (long)tokens.Length * vocab;
            for (int start = 0; start < tokens.Length; start += PrefillChunk)
            {
                int count = Math.Min(PrefillChunk, tokens.Length - start);
                var chunkLogits = everyPosition ? logits.Slice(start * vocab, count * vocab) : logits[..vocab];
                _transformer.Forward(tokens.Slice(start, count), _cache, scratch, chunkLogits);
            }
        }
        finally
        {
            _transformer.ReturnPrefillScratch(scratch);
        }
    }

    /// <summary>Rows the session's own (decode) buffers hold: 1 once it has decoded, whatever its prompts' lengths.</summary>
    internal int DecodeScratchRows => _decodeScratch.Rows;
    public void Truncate(int length) => _cache.Truncate(length);
    public void Dispose() { }
}

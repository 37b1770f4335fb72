namespace OnDeviceLlm.Runtime.Inference;

public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 256;
    public SamplingOptions Sampling { get; init; } = new();
    /// <summary>Ids that end generation besides the model's EOS ids.</summary>
    public IReadOnlyList<int> StopTokens { get; init; } = [];
    /// <summary>Keep generating past EOS (stop tokens still stop).</summary>
    public bool IgnoreEos { get; init; }

    public void Validate()
    {
        if (MaxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), "The maximum number of new tokens cannot be negative.");
        Sampling.Validate();
    }
}

public enum FinishReason
{
    /// <summary>An EOS or stop token was generated (it is the last token yielded).</summary>
    Stop,
    /// <summary>MaxNewTokens were generated.</summary>
    Length,
    /// <summary>The context window is full.</summary>
    ContextFull,
}

/// <summary>The generation loop: prefill the prompt, then sample and decode one token at a time.</summary>
public sealed class Generator
{
    private readonly InferenceSession _session;
    private readonly GenerationOptions _options;
    private readonly HashSet<int> _stops;

    public Generator(InferenceSession session, GenerationOptions options, IReadOnlyList<int> eosTokens)
    {
        options.Validate();
        _session = session;
        _options = options;
        _stops = [.. options.StopTokens, .. options.IgnoreEos ? [] : eosTokens];
    }

    /// <summary>Why the last <see cref="Generate"/> ended; null while it runs.</summary>
    public FinishReason? FinishReason { get; private set; }

    /// <summary>
    /// Evaluates <paramref name="prompt"/> after what the session holds and yields each new token as soon as it is sampled.
    /// A prompt that does not fit the context throws <see cref="InferenceException"/>; generation that fills it stops.
    /// </summary>
    public IEnumerable<int> Generate(IReadOnlyList<int> prompt, CancellationToken cancellationToken = default)
    {
        FinishReason = null;
        var history = new List<int>(prompt.Count + _options.MaxNewTokens);
        history.AddRange(prompt);
        var sampler = new Sampler(_options.Sampling, _session.VocabSize);
        var logits = new float[_session.VocabSize];
        if (_options.MaxNewTokens == 0) { FinishReason = Inference.FinishReason.Length; yield break; }

        _session.Prefill(history.ToArray()).CopyTo(logits);
        for (int produced = 0; ; )
        {
            cancellationToken.ThrowIfCancellationRequested();
            int token = sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history));
            history.Add(token);
            produced++;
            yield return token;
            if (_stops.Contains(token)) { FinishReason = Inference.FinishReason.Stop; yield break; }
            if (produced >= _options.MaxNewTokens) { FinishReason = Inference.FinishReason.Length; yield break; }
            if (_session.Position >= _session.ContextLength) { FinishReason = Inference.FinishReason.ContextFull; yield break; }
            _session.Decode(token).CopyTo(logits);
        }
    }
}

namespace OnDeviceLlm.Runtime.Inference;

/// <summary>
/// How the next token is chosen from the logits. The defaults give greedy decoding; each filter is
/// off at its default value. Semantics follow Hugging Face transformers' logits processors, plus
/// OpenAI-style frequency/presence penalties.
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>Divides the logits before softmax; 0 means greedy (argmax, ties go to the lowest id).</summary>
    public float Temperature { get; init; } = 0f;

    /// <summary>Keep only the k most likely tokens (tokens tied with the k-th are kept too, as in HF); 0 = off.</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of most likely tokens whose probability mass reaches top_p; 1 = off.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Keep tokens whose probability is at least min_p times the top token's; 0 = off.</summary>
    public float MinP { get; init; }

    /// <summary>CTRL/HF style: each distinct previous token's logit becomes logit/penalty if positive, logit*penalty otherwise; 1 = off.</summary>
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>OpenAI style: subtract count × penalty from each previous token's logit; 0 = off.</summary>
    public float FrequencyPenalty { get; init; }

    /// <summary>OpenAI style: subtract the penalty once from every token that occurred before; 0 = off.</summary>
    public float PresencePenalty { get; init; }

    /// <summary>The same seed with the same logits gives the same tokens; null draws a random seed.</summary>
    public int? Seed { get; init; }

    public bool IsGreedy => Temperature == 0f;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first option that is out of range.</summary>
    public void Validate()
    {
        // Written as !(in range) so that NaN is rejected too.
        if (!(Temperature >= 0f) || float.IsPositiveInfinity(Temperature))
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature,
                $"Temperature must be a finite number >= 0 (0 means greedy), but it is {Temperature}.");
        if (TopK < 0)
            throw new ArgumentOutOfRangeException(nameof(TopK), TopK,
                $"TopK must be >= 0 (0 turns it off), but it is {TopK}.");
        if (!(TopP > 0f && TopP <= 1f))
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP,
                $"TopP must be in (0, 1] (1 turns it off), but it is {TopP}.");
        if (!(MinP >= 0f && MinP <= 1f))
            throw new ArgumentOutOfRangeException(nameof(MinP), MinP,
                $"MinP must be in [0, 1] (0 turns it off), but it is {MinP}.");
        if (!(RepetitionPenalty > 0f) || float.IsPositiveInfinity(RepetitionPenalty))
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty,
                $"RepetitionPenalty must be a finite number > 0 (1 turns it off), but it is {RepetitionPenalty}.");
        if (!float.IsFinite(FrequencyPenalty))
            throw new ArgumentOutOfRangeException(nameof(FrequencyPenalty), FrequencyPenalty,
                $"FrequencyPenalty must be a finite number (0 turns it off), but it is {FrequencyPenalty}.");
        if (!float.IsFinite(PresencePenalty))
            throw new ArgumentOutOfRangeException(nameof(PresencePenalty), PresencePenalty,
                $"PresencePenalty must be a finite number (0 turns it off), but it is {PresencePenalty}.");
    }
}

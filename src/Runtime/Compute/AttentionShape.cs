namespace OnDeviceLlm.Runtime.Compute;

/// <summary>
/// One causal attention call (<see cref="IKernels.Attention(in AttentionShape, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float})"/>,
/// odllm_attention): <see cref="Queries"/> rows at positions <see cref="Position0"/>… over a KV cache laid out
/// [position, kv_head, head_dim]; query head h reads KV head h / (Heads / KvHeads).
/// </summary>
public readonly struct AttentionShape
{
    public required int Queries { get; init; }
    public required int Position0 { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int HeadDim { get; init; }
    /// <summary>Multiplies q·k (plus ALiBi).</summary>
    public required float Scale { get; init; }
    /// <summary>Above 0: each score s becomes Softcap·tanh(s / Softcap) (Gemma 2).</summary>
    public float Softcap { get; init; }
    /// <summary>Above 0: the query at pos sees keys pos − Window &lt; j ≤ pos (sliding window).</summary>
    public int Window { get; init; }
    /// <summary>Null, or one slope per head: slope·j is added to q·k of key position j before the scale.</summary>
    public float[]? AlibiSlopes { get; init; }

    /// <summary>Checks the buffers against the shape; returns the positions the cache spans handed in hold.</summary>
    internal int Validate(int qLength, int keysLength, int valuesLength, int outputLength)
    {
        if (Queries <= 0 || Position0 < 0 || Heads <= 0 || KvHeads <= 0 || HeadDim <= 0 || Heads % KvHeads != 0 || Window < 0)
            throw new ArgumentException($"Invalid attention shape: {Queries} queries at {Position0}, {Heads} heads over {KvHeads} KV heads of {HeadDim}, window {Window}.");
        if (!float.IsFinite(Scale) || !(Softcap >= 0) || !float.IsFinite(Softcap))
            throw new ArgumentException($"Invalid attention scale {Scale} or softcap {Softcap}.");
        if (AlibiSlopes is not null && AlibiSlopes.Length < Heads)
            throw new ArgumentException($"{AlibiSlopes.Length} ALiBi slopes for {Heads} heads.");
        long qValues = (long)Queries * Heads * HeadDim, kvRow = (long)KvHeads * HeadDim;
        if (qLength < qValues) throw new ArgumentException($"q holds {qLength} values but {qValues} are needed.");
        if (outputLength < qValues) throw new ArgumentException($"The output holds {outputLength} values but {qValues} are needed.");
        long positions = Math.Min(keysLength, valuesLength) / kvRow;
        if (positions < (long)Position0 + Queries)
            throw new ArgumentException($"The cache holds {positions} positions but {(long)Position0 + Queries} are attended to.");
        return (int)positions;
    }
}

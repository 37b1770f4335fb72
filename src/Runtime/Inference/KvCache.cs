namespace OnDeviceLlm.Runtime.Inference;

/// <summary>
/// Keys and values of every layer for positions [0, Length), position-major: [position, kv_head, head_dim].
/// </summary>
public sealed class KvCache
{
    private readonly float[][] _keys, _values;

    public KvCache(int layers, int capacity, int kvDim)
    {
        if (capacity <= 0) throw new ArgumentOutOfRangeException(nameof(capacity), "The cache must hold at least one position.");
        Capacity = capacity; KvDim = kvDim;
        _keys = new float[layers][]; _values = new float[layers][];
        for (int l = 0; l < layers; l++)
        {
            _keys[l] = new float[(long)capacity * kvDim];
            _values[l] = new float[(long)capacity * kvDim];
        }
    }

    /// <summary>Positions the cache can hold.</summary>
    public int Capacity { get; }
    public int KvDim { get; }
    /// <summary>Positions currently filled.</summary>
    public int Length { get; internal set; }

    public Span<float> Keys(int layer) => _keys[layer];
    public Span<float> Values(int layer) => _values[layer];

    /// <summary>Forgets positions from <paramref name="length"/> on (to reuse a common prefix).</summary>
    public void Truncate(int length)
    {
        if ((uint)length > (uint)Length) throw new ArgumentOutOfRangeException(nameof(length), $"Cannot keep {length} positions of a cache holding {Length}.");
        Length = length;
    }
}

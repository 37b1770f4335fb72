using System.Numerics.Tensors;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Inference;

/// <summary>Element type of a <see cref="KvCache"/>.</summary>
public enum KvCacheType
{
    /// <summary>
    /// F32 for a model whose matrices are f32, so its logits stay those of the f32 reference; F16 for f16, bf16 and
    /// quantized models, whose weights already round more than an f16 cache does, for half the memory and bandwidth.
    /// </summary>
    Auto,
    /// <summary>IEEE binary32: exact.</summary>
    F32,
    /// <summary>IEEE binary16, rounded to nearest even on store.</summary>
    F16,
}

/// <summary>
/// Keys and values of every layer for positions [0, Length), position-major: [position, kv_head, head_dim], stored as
/// f32 (<see cref="Keys"/>, <see cref="Values"/>) or f16 (<see cref="HalfKeys"/>, <see cref="HalfValues"/>).
/// </summary>
public sealed class KvCache
{
    private readonly float[][]? _keys, _values;
    private readonly Half[][]? _halfKeys, _halfValues;

    public KvCache(int layers, int capacity, int kvDim, KvCacheType type = KvCacheType.F32)
    {
        if (capacity <= 0) throw new ArgumentOutOfRangeException(nameof(capacity), "The cache must hold at least one position.");
        if (type is not (KvCacheType.F32 or KvCacheType.F16))
            throw new ArgumentOutOfRangeException(nameof(type), type, "A cache stores F32 or F16; resolve Auto for the model first.");
        Capacity = capacity; KvDim = kvDim; Layers = layers; ElementType = type;
        long elements = (long)capacity * kvDim;
        if (type == KvCacheType.F16)
        {
            _halfKeys = new Half[layers][]; _halfValues = new Half[layers][];
            for (int l = 0; l < layers; l++) { _halfKeys[l] = new Half[elements]; _halfValues[l] = new Half[elements]; }
        }
        else
        {
            _keys = new float[layers][]; _values = new float[layers][];
            for (int l = 0; l < layers; l++) { _keys[l] = new float[elements]; _values[l] = new float[elements]; }
        }
    }

    /// <summary>Positions the cache can hold.</summary>
    public int Capacity { get; }
    public int KvDim { get; }
    public int Layers { get; }
    public KvCacheType ElementType { get; }
    /// <summary>Positions currently filled.</summary>
    public int Length { get; internal set; }
    /// <summary>Memory of the keys and values of every layer and position.</summary>
    public long ByteLength => (long)Layers * Capacity * KvDim * 2 * ElementBytes(ElementType);

    /// <summary>The f32 keys of a layer; only for an F32 cache.</summary>
    public Span<float> Keys(int layer) => (_keys ?? throw WrongType(KvCacheType.F32))[layer];
    public Span<float> Values(int layer) => (_values ?? throw WrongType(KvCacheType.F32))[layer];
    /// <summary>The f16 keys of a layer; only for an F16 cache.</summary>
    public Span<Half> HalfKeys(int layer) => (_halfKeys ?? throw WrongType(KvCacheType.F16))[layer];
    public Span<Half> HalfValues(int layer) => (_halfValues ?? throw WrongType(KvCacheType.F16))[layer];

    /// <summary>Writes the keys and values of consecutive positions from <paramref name="position"/> on, rounding them for an F16 cache.</summary>
    public void Store(int layer, int position, ReadOnlySpan<float> keys, ReadOnlySpan<float> values)
    {
        if (keys.Length != values.Length || keys.Length % KvDim != 0)
            throw new ArgumentException($"Keys ({keys.Length}) and values ({values.Length}) must be whole positions of {KvDim}.", nameof(values));
        if ((uint)position > (uint)Capacity || keys.Length / KvDim > Capacity - position)
            throw new ArgumentOutOfRangeException(nameof(position), $"Positions {position}.. do not fit a cache of {Capacity}.");
        int offset = position * KvDim;
        if (_halfKeys is not null)
        {
            TensorPrimitives.ConvertToHalf(keys, _halfKeys[layer].AsSpan(offset, keys.Length));
            TensorPrimitives.ConvertToHalf(values, _halfValues![layer].AsSpan(offset, values.Length));
        }
        else
        {
            keys.CopyTo(_keys![layer].AsSpan(offset));
            values.CopyTo(_values![layer].AsSpan(offset));
        }
    }

    /// <summary>Forgets positions from <paramref name="length"/> on (to reuse a common prefix).</summary>
    public void Truncate(int length)
    {
        if ((uint)length > (uint)Length) throw new ArgumentOutOfRangeException(nameof(length), $"Cannot keep {length} positions of a cache holding {Length}.");
        Length = length;
    }

    /// <summary>Bytes per stored key or value element: 4 for F32, 2 for F16.</summary>
    public static int ElementBytes(KvCacheType type) => type switch
    {
        KvCacheType.F32 => sizeof(float),
        KvCacheType.F16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Auto has no size until it is resolved for a model."),
    };

    /// <summary>Memory of one cache of <paramref name="capacity"/> positions for <paramref name="config"/>.</summary>
    public static long ByteSize(ModelConfig config, int capacity, KvCacheType type) =>
        (long)config.NumLayers * capacity * config.NumKvHeads * config.HeadDim * 2 * ElementBytes(type);

    /// <summary><paramref name="requested"/>, with Auto decided by the type the model's matrices are stored in (see <see cref="KvCacheType.Auto"/>).</summary>
    public static KvCacheType Resolve(KvCacheType requested, TensorType matrixType) => requested switch
    {
        KvCacheType.Auto => matrixType == TensorType.F32 ? KvCacheType.F32 : KvCacheType.F16,
        KvCacheType.F32 or KvCacheType.F16 => requested,
        _ => throw new ArgumentOutOfRangeException(nameof(requested), requested, "Unknown KV cache type."),
    };

    private InvalidOperationException WrongType(KvCacheType asked) =>
        new($"This KV cache stores {ElementType}, not {asked}.");
}

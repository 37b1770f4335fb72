namespace OnDeviceLlm.Runtime.Model;

/// <summary>Storage type of a tensor in a model file. Values are stored in the file; never renumber.</summary>
public enum TensorType : byte
{
    F32 = 0,
    F16 = 1,
    BF16 = 2,
    /// <summary>
    /// Symmetric int8 with one f32 scale per output row (MediaPipe's int8), planar: all rows × cols int8 values
    /// row-major, then the rows f32 scales. Kept apart rather than after each row so that every row starts at
    /// row·cols (32-byte aligned when cols is a multiple of 32, as the kernels' blocks of 32 need) and the scales
    /// form one float array; the total size is the same either way.
    /// </summary>
    Int8 = 3,
    /// <summary>Blocks of 32: f16 scale + 32 int8 (byte-identical to GGUF Q8_0).</summary>
    Q8_0 = 4,
    /// <summary>Blocks of 32: f16 scale + 16 bytes of nibbles (byte-identical to GGUF Q4_0).</summary>
    Q4_0 = 5,
}

public static class TensorTypes
{
    /// <summary>Bytes a tensor of this type and shape occupies; throws for shapes the type cannot hold.</summary>
    public static long ByteLength(TensorType type, ReadOnlySpan<long> shape)
    {
        long count = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new ArgumentException("Negative dimension.");
            count = checked(count * d);
        }
        long rows = shape.Length == 0 ? 1 : count / Math.Max(1, shape[^1]);
        long cols = shape.Length == 0 ? 1 : shape[^1];
        return type switch
        {
            TensorType.F32 => checked(count * 4),
            TensorType.F16 or TensorType.BF16 => checked(count * 2),
            TensorType.Int8 => checked(count + rows * 4),
            TensorType.Q8_0 => cols % 32 == 0 ? checked(count / 32 * 34) : throw new ArgumentException("q8 rows must be a multiple of 32."),
            TensorType.Q4_0 => cols % 32 == 0 ? checked(count / 32 * 18) : throw new ArgumentException("q4 rows must be a multiple of 32."),
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown tensor type."),
        };
    }
}

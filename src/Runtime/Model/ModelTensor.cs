using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace OnDeviceLlm.Runtime.Model;

/// <summary>
/// A named tensor whose bytes live in memory owned by someone else (a memory-mapped model file),
/// row-major with the last dimension contiguous; matrices are [out, in] as in PyTorch.
/// </summary>
public sealed unsafe class ModelTensor
{
    public ModelTensor(string name, TensorType type, long[] shape, nint data, long byteLength)
    {
        Name = name; Type = type; Shape = shape; Data = data; ByteLength = byteLength;
    }

    public string Name { get; }
    public TensorType Type { get; }
    public long[] Shape { get; }
    /// <summary>Address of the first byte; valid while the owner is open.</summary>
    public nint Data { get; }
    public long ByteLength { get; }

    public long ElementCount { get { long n = 1; foreach (var d in Shape) n *= d; return n; } }
    /// <summary>Rows of a matrix (output features); 1 for a vector.</summary>
    public int Rows => Shape.Length < 2 ? 1 : checked((int)(ElementCount / Shape[^1]));
    /// <summary>Columns of a matrix (input features).</summary>
    public int Cols => checked((int)Shape[^1]);

    public ReadOnlySpan<byte> Bytes => new((void*)Data, checked((int)ByteLength));

    /// <summary>One row decoded to f32 (used for embedding lookup).</summary>
    public void ReadRow(int row, Span<float> destination)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row));
        int cols = Cols;
        if (destination.Length < cols) throw new ArgumentException("Destination too short.", nameof(destination));
        if (Type == TensorType.Int8)
        {
            // Planar int8: the row's values at row·cols, its scale in the table after all rows.
            byte* values = (byte*)Data + (long)row * cols;
            float scale = Unsafe.ReadUnaligned<float>((byte*)Data + (long)Rows * cols + (long)row * 4);
            Dequantize.Int8Row(new ReadOnlySpan<byte>(values, cols), scale, destination[..cols]);
            return;
        }
        long rowBytes = ByteLength / Rows;
        var src = new ReadOnlySpan<byte>((byte*)Data + rowBytes * row, checked((int)rowBytes));
        Dequantize.Row(Type, src, destination[..cols]);
    }

    /// <summary>The whole tensor decoded to a new f32 array (for small tensors: norms, biases).</summary>
    public float[] ToFloat32()
    {
        var result = new float[checked((int)ElementCount)];
        int rows = Rows, cols = Cols;
        for (int r = 0; r < rows; r++) ReadRow(r, result.AsSpan(r * cols, cols));
        return result;
    }

    public override string ToString() => $"{Name} {Type} [{string.Join(", ", Shape)}]";
}

/// <summary>Anything that can hand out tensors by name (a model file, an in-memory import).</summary>
public interface ITensorSource
{
    IReadOnlyList<ModelTensor> Tensors { get; }
    ModelTensor? Find(string name);
}

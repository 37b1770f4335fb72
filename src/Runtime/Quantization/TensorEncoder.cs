using System.Buffers;
using System.Runtime.InteropServices;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Quantization;

/// <summary>
/// Streams one tensor of <paramref name="rows"/> × <paramref name="cols"/> f32 values into its stored type, a chunk
/// of whole rows at a time, so conversion memory stays bounded by the chunk. <see cref="Complete"/> writes what
/// follows the rows (int8's scale table) and checks that every row arrived.
/// </summary>
public sealed class TensorEncoder : IDisposable
{
    private readonly Stream _output;
    private readonly float[]? _scales;
    private byte[] _buffer = [];
    private long _rowsDone;

    public TensorEncoder(TensorType type, long rows, int cols, Stream output)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        if (!Encode.Supports(type, cols))
            throw new ArgumentException($"{type} rows must be a multiple of {Encode.BlockSize} values; these have {cols}.", nameof(cols));
        Type = type; Rows = rows; Cols = cols; _output = output;
        if (type == TensorType.Int8) _scales = new float[checked((int)rows)];
    }

    public TensorType Type { get; }
    public long Rows { get; }
    public int Cols { get; }

    /// <summary>Encodes and writes whole rows (a multiple of <see cref="Cols"/> values).</summary>
    public void Write(ReadOnlySpan<float> values)
    {
        if (values.Length % Cols != 0) throw new ArgumentException($"{values.Length} values are not whole rows of {Cols}.", nameof(values));
        long rows = values.Length / Cols;
        if (_rowsDone + rows > Rows) throw new InvalidOperationException($"More than the tensor's {Rows} rows were written.");
        // int8 rows are the bare values here; their scales follow all rows, in Complete.
        long bytes = Type == TensorType.Int8 ? rows * Cols : TensorTypes.ByteLength(Type, [rows, Cols]);
        if (_buffer.Length < bytes)
        {
            if (_buffer.Length > 0) ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = ArrayPool<byte>.Shared.Rent(checked((int)bytes));
        }
        var scales = _scales is null ? default : _scales.AsSpan(checked((int)_rowsDone), (int)rows);
        int written = Encode.Rows(Type, values, Cols, _buffer, scales);
        _output.Write(_buffer, 0, written);
        _rowsDone += rows;
    }

    /// <summary>Writes the trailing parts of the layout; throws when rows are missing.</summary>
    public void Complete()
    {
        if (_rowsDone != Rows) throw new InvalidOperationException($"Only {_rowsDone} of the tensor's {Rows} rows were written.");
        if (_scales is not null) _output.Write(MemoryMarshal.AsBytes(_scales.AsSpan()));
    }

    public void Dispose()
    {
        if (_buffer.Length > 0) ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
    }
}

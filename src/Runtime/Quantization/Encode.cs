using System.Buffers.Binary;
using System.Runtime.InteropServices;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Quantization;

/// <summary>f32 rows → stored types. The inverse of <see cref="Dequantize"/>.</summary>
public static class Encode
{
    /// <summary>Values per Q8_0/Q4_0 block, and per activation block of the integer kernels.</summary>
    public const int BlockSize = 32;

    /// <summary>
    /// Encodes whole rows of <paramref name="cols"/> values; returns the bytes written. For
    /// <see cref="TensorType.Int8"/> only the int8 values go to <paramref name="dst"/> and each row's scale to
    /// <paramref name="rowScales"/>: the scales form a table after all rows (see <see cref="TensorType.Int8"/>),
    /// which <see cref="TensorEncoder"/> writes.
    /// </summary>
    public static int Rows(TensorType type, ReadOnlySpan<float> src, int cols, Span<byte> dst, Span<float> rowScales = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        if (src.Length % cols != 0) throw new ArgumentException($"{src.Length} values are not whole rows of {cols}.", nameof(src));
        int rows = src.Length / cols;
        switch (type)
        {
            case TensorType.F32:
                MemoryMarshal.AsBytes(src).CopyTo(dst);
                return src.Length * 4;
            case TensorType.F16:
            {
                var h = MemoryMarshal.Cast<byte, Half>(dst[..(src.Length * 2)]);
                for (int i = 0; i < src.Length; i++) h[i] = (Half)src[i];
                return src.Length * 2;
            }
            case TensorType.BF16:
            {
                var b = MemoryMarshal.Cast<byte, ushort>(dst[..(src.Length * 2)]);
                for (int i = 0; i < src.Length; i++) b[i] = SingleToBFloat16(src[i]);
                return src.Length * 2;
            }
            case TensorType.Int8:
                if (rowScales.Length < rows) throw new ArgumentException($"int8 needs a scale slot for each of the {rows} rows.", nameof(rowScales));
                for (int r = 0; r < rows; r++)
                    rowScales[r] = Int8Row(src.Slice(r * cols, cols), MemoryMarshal.Cast<byte, sbyte>(dst.Slice(r * cols, cols)));
                return src.Length;
            case TensorType.Q8_0:
                RequireBlocks(type, cols);
                for (int b = 0; b < src.Length / BlockSize; b++) Q8_0Block(src.Slice(b * BlockSize, BlockSize), dst.Slice(b * 34, 34));
                return src.Length / BlockSize * 34;
            case TensorType.Q4_0:
                RequireBlocks(type, cols);
                for (int b = 0; b < src.Length / BlockSize; b++) Q4_0Block(src.Slice(b * BlockSize, BlockSize), dst.Slice(b * 18, 18));
                return src.Length / BlockSize * 18;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown tensor type.");
        }
    }

    /// <summary>True when rows of <paramref name="cols"/> values can be stored as <paramref name="type"/>.</summary>
    public static bool Supports(TensorType type, long cols) =>
        type is not (TensorType.Int8 or TensorType.Q8_0 or TensorType.Q4_0) || (cols > 0 && cols % BlockSize == 0);

    private static void RequireBlocks(TensorType type, int cols)
    {
        if (cols % BlockSize != 0) throw new ArgumentException($"{type} rows must be a multiple of {BlockSize} values; these have {cols}.", nameof(cols));
    }

    /// <summary>
    /// Symmetric per-row int8: scale = max|x| / 127, q = round(x / scale) half away from zero, as Q8_0 but over the
    /// whole row. Returns the scale.
    /// </summary>
    public static float Int8Row(ReadOnlySpan<float> x, Span<sbyte> q)
    {
        float amax = 0;
        foreach (float v in x) amax = MathF.Max(amax, MathF.Abs(v));
        float d = amax / 127;
        float id = d != 0 ? 1 / d : 0;
        for (int i = 0; i < x.Length; i++) q[i] = (sbyte)MathF.Round(x[i] * id, MidpointRounding.AwayFromZero);
        return d;
    }

    /// <summary>
    /// One GGUF Q8_0 block, byte for byte as llama.cpp's quantize_row_q8_0_ref: d = amax/127 stored as f16 (round to
    /// nearest even), q = roundf(x · (1/d)) with the f32 d, not the rounded f16 one.
    /// </summary>
    public static void Q8_0Block(ReadOnlySpan<float> x, Span<byte> block)
    {
        float amax = 0;
        for (int i = 0; i < BlockSize; i++) amax = MathF.Max(amax, MathF.Abs(x[i]));
        float d = amax / 127;
        float id = d != 0 ? 1 / d : 0;
        BinaryPrimitives.WriteHalfLittleEndian(block, (Half)d);
        for (int i = 0; i < BlockSize; i++) block[2 + i] = (byte)(sbyte)MathF.Round(x[i] * id, MidpointRounding.AwayFromZero);
    }

    /// <summary>
    /// One GGUF Q4_0 block, byte for byte as llama.cpp's quantize_row_q4_0_ref: d = (the value of largest magnitude,
    /// sign kept) / −8, q = min(15, trunc(x/d + 8.5)); byte j holds value j in its low nibble and value j+16 in its high.
    /// </summary>
    public static void Q4_0Block(ReadOnlySpan<float> x, Span<byte> block)
    {
        float amax = 0, max = 0;
        for (int i = 0; i < BlockSize; i++)
        {
            // Strictly greater, as llama.cpp: the first of equal magnitudes wins, which fixes the sign of d.
            if (amax < MathF.Abs(x[i])) { amax = MathF.Abs(x[i]); max = x[i]; }
        }
        float d = max / -8;
        float id = d != 0 ? 1 / d : 0;
        BinaryPrimitives.WriteHalfLittleEndian(block, (Half)d);
        for (int j = 0; j < BlockSize / 2; j++)
        {
            int lo = Math.Min(15, (int)(x[j] * id + 8.5f));
            int hi = Math.Min(15, (int)(x[j + BlockSize / 2] * id + 8.5f));
            block[2 + j] = (byte)(lo | (hi << 4));
        }
    }

    /// <summary>Round to nearest even, as torch's float → bfloat16 cast; NaN stays NaN.</summary>
    public static ushort SingleToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }
}

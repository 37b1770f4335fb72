using System.Runtime.InteropServices;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Quantization;

/// <summary>f32 rows → stored types. The inverse of <see cref="Dequantize"/>.</summary>
public static class Encode
{
    /// <summary>Encodes whole rows of <paramref name="cols"/> values; returns the bytes written.</summary>
    public static int Rows(TensorType type, ReadOnlySpan<float> src, int cols, Span<byte> dst)
    {
        switch (type)
        {
            case TensorType.F32:
                MemoryMarshal.AsBytes(src).CopyTo(dst);
                return src.Length * 4;
            case TensorType.F16:
            {
                var h = MemoryMarshal.Cast<byte, Half>(dst);
                for (int i = 0; i < src.Length; i++) h[i] = (Half)src[i];
                return src.Length * 2;
            }
            case TensorType.BF16:
            {
                var b = MemoryMarshal.Cast<byte, ushort>(dst);
                for (int i = 0; i < src.Length; i++) b[i] = SingleToBFloat16(src[i]);
                return src.Length * 2;
            }
            default:
                throw new NotSupportedException($"Encoding to {type} is not implemented.");
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

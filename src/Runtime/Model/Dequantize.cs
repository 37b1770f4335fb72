using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace OnDeviceLlm.Runtime.Model;

/// <summary>Decodes stored types to f32. Reference code, not the hot path.</summary>
public static class Dequantize
{
    /// <summary>
    /// Decodes <paramref name="dst"/>.Length values of a type whose rows carry their own scales (every type but
    /// <see cref="TensorType.Int8"/>, whose scale lives in a table after the rows: use <see cref="Int8Row"/>).
    /// Several whole rows may be decoded at once.
    /// </summary>
    public static void Row(TensorType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case TensorType.F32:
                MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst);
                break;
            case TensorType.F16:
            {
                var h = MemoryMarshal.Cast<byte, Half>(src);
                for (int i = 0; i < dst.Length; i++) dst[i] = (float)h[i];
                break;
            }
            case TensorType.BF16:
            {
                var b = MemoryMarshal.Cast<byte, ushort>(src);
                for (int i = 0; i < dst.Length; i++) dst[i] = BFloat16ToSingle(b[i]);
                break;
            }
            case TensorType.Int8:
                throw new ArgumentException("int8 rows keep their scales in a table after all rows; decode them with Dequantize.Int8Row.", nameof(type));
            case TensorType.Q8_0:
                for (int b = 0; b < dst.Length / 32; b++)
                {
                    var block = src.Slice(b * 34, 34);
                    float d = (float)BinaryPrimitives.ReadHalfLittleEndian(block);
                    for (int i = 0; i < 32; i++) dst[b * 32 + i] = (sbyte)block[2 + i] * d;
                }
                break;
            case TensorType.Q4_0:
                for (int b = 0; b < dst.Length / 32; b++)
                {
                    var block = src.Slice(b * 18, 18);
                    float d = (float)BinaryPrimitives.ReadHalfLittleEndian(block);
                    for (int i = 0; i < 16; i++)
                    {
                        dst[b * 32 + i] = ((block[2 + i] & 0x0F) - 8) * d;
                        dst[b * 32 + i + 16] = ((block[2 + i] >> 4) - 8) * d;
                    }
                }
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown tensor type.");
        }
    }

    /// <summary>One int8 row: its values times the row's scale.</summary>
    public static void Int8Row(ReadOnlySpan<byte> values, float scale, Span<float> dst)
    {
        var q = MemoryMarshal.Cast<byte, sbyte>(values);
        for (int i = 0; i < dst.Length; i++) dst[i] = q[i] * scale;
    }

    public static float BFloat16ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);
}

using System.Buffers.Binary;

namespace OnDeviceLlm.Runtime.Import.Gguf;

/// <summary>
/// f32 values of the ggml block types the runtime does not compute with (the k-quants Q2_K…Q6_K, and Q4_1, Q5_0,
/// Q5_1), transcribed from ggml's reference dequantize_row_* (ggml-quants.c) and checked against its to_float.
/// Import re-encodes them as Q8_0, whose error is far below theirs.
/// </summary>
public static class GgufDequantize
{
    public static bool Supports(GgmlType type) => type is GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K;

    /// <summary>Decodes whole blocks: <paramref name="dst"/>.Length values from the blocks at the start of <paramref name="src"/>.</summary>
    public static void Row(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (!GgmlTypes.TryGetBlock(type, out int blockValues, out int blockBytes) || !Supports(type))
            throw new ArgumentOutOfRangeException(nameof(type), type, "Not a type this class decodes.");
        if (dst.Length % blockValues != 0) throw new ArgumentException($"{dst.Length} values are not whole {type} blocks.", nameof(dst));
        int blocks = dst.Length / blockValues;
        if (src.Length < blocks * blockBytes) throw new ArgumentException("The source is shorter than the blocks.", nameof(src));
        for (int b = 0; b < blocks; b++)
        {
            var block = src.Slice(b * blockBytes, blockBytes);
            var y = dst.Slice(b * blockValues, blockValues);
            switch (type)
            {
                case GgmlType.Q4_1: Q4_1(block, y); break;
                case GgmlType.Q5_0: Q5(block, y, hasMin: false); break;
                case GgmlType.Q5_1: Q5(block, y, hasMin: true); break;
                case GgmlType.Q2_K: Q2_K(block, y); break;
                case GgmlType.Q3_K: Q3_K(block, y); break;
                case GgmlType.Q4_K: Q4_K(block, y); break;
                case GgmlType.Q5_K: Q5_K(block, y); break;
                default: Q6_K(block, y); break;
            }
        }
    }

    private static float Half(ReadOnlySpan<byte> b, int at) => (float)BinaryPrimitives.ReadHalfLittleEndian(b[at..]);

    // block_q4_1: d, m (f16), qs[16]
    private static void Q4_1(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, 0), m = Half(x, 2);
        var qs = x.Slice(4, 16);
        for (int j = 0; j < 16; j++)
        {
            y[j] = (qs[j] & 0x0F) * d + m;
            y[j + 16] = (qs[j] >> 4) * d + m;
        }
    }

    // block_q5_0: d (f16), qh[4], qs[16]; block_q5_1: d, m (f16), qh[4], qs[16]
    private static void Q5(ReadOnlySpan<byte> x, Span<float> y, bool hasMin)
    {
        float d = Half(x, 0), m = hasMin ? Half(x, 2) : 0;
        int at = hasMin ? 4 : 2;
        uint qh = BinaryPrimitives.ReadUInt32LittleEndian(x[at..]);
        var qs = x.Slice(at + 4, 16);
        for (int j = 0; j < 16; j++)
        {
            int xh0 = (int)((qh >> j) << 4) & 0x10;
            int xh1 = (int)(qh >> (j + 12)) & 0x10;
            int x0 = (qs[j] & 0x0F) | xh0, x1 = (qs[j] >> 4) | xh1;
            if (hasMin)
            {
                y[j] = x0 * d + m;
                y[j + 16] = x1 * d + m;
            }
            else
            {
                y[j] = (x0 - 16) * d;
                y[j + 16] = (x1 - 16) * d;
            }
        }
    }

    // block_q2_K: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin (f16)
    private static void Q2_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        var scales = x[..16];
        var q = x.Slice(16, 64);
        float d = Half(x, 80), min = Half(x, 82);
        int isc = 0, o = 0;
        for (int n = 0; n < 256; n += 128, q = q[32..])
        {
            for (int shift = 0; shift < 8; shift += 2)
            {
                for (int half = 0; half < 2; half++)
                {
                    byte sc = scales[isc++];
                    float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    for (int l = 0; l < 16; l++) y[o++] = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
                }
            }
        }
    }

    // block_q3_K: hmask[32], qs[64], scales[12] (sixteen 6-bit scales, packed), d (f16)
    private static void Q3_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        var hm = x[..32];
        var q = x.Slice(32, 64);
        float dAll = Half(x, 108);
        const uint kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        Span<uint> aux = stackalloc uint[4];
        aux[0] = BinaryPrimitives.ReadUInt32LittleEndian(x[96..]);
        aux[1] = BinaryPrimitives.ReadUInt32LittleEndian(x[100..]);
        uint tmp = BinaryPrimitives.ReadUInt32LittleEndian(x[104..]);
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        Span<sbyte> scales = stackalloc sbyte[16];
        for (int i = 0; i < 16; i++) scales[i] = (sbyte)(aux[i / 4] >> (8 * (i % 4)));
        int isc = 0, o = 0;
        byte m = 1;
        for (int n = 0; n < 256; n += 128, q = q[32..])
        {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1)
            {
                for (int half = 0; half < 2; half++)
                {
                    float dl = dAll * (scales[isc++] - 32);
                    for (int l = 16 * half; l < 16 * half + 16; l++)
                        y[o++] = dl * (((q[l] >> shift) & 3) - ((hm[l] & m) != 0 ? 0 : 4));
                }
            }
        }
    }

    /// <summary>ggml's get_scale_min_k4: the j-th 6-bit scale and min of a Q4_K/Q5_K block.</summary>
    private static (int Scale, int Min) ScaleMin(int j, ReadOnlySpan<byte> q)
    {
        if (j < 4) return (q[j] & 63, q[j + 4] & 63);
        return ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }

    // block_q4_K: d, dmin (f16), scales[12], qs[128]
    private static void Q4_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, 0), min = Half(x, 2);
        var scales = x.Slice(4, 12);
        var q = x.Slice(16, 128);
        int o = 0;
        for (int j = 0, isc = 0; j < 256; j += 64, isc += 2, q = q[32..])
        {
            var (sc1, m1) = ScaleMin(isc, scales);
            var (sc2, m2) = ScaleMin(isc + 1, scales);
            float d1 = d * sc1, min1 = min * m1, d2 = d * sc2, min2 = min * m2;
            for (int l = 0; l < 32; l++) y[o++] = d1 * (q[l] & 0xF) - min1;
            for (int l = 0; l < 32; l++) y[o++] = d2 * (q[l] >> 4) - min2;
        }
    }

    // block_q5_K: d, dmin (f16), scales[12], qh[32], qs[128]
    private static void Q5_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, 0), min = Half(x, 2);
        var scales = x.Slice(4, 12);
        var qh = x.Slice(16, 32);
        var ql = x.Slice(48, 128);
        int o = 0, u1 = 1, u2 = 2;
        for (int j = 0, isc = 0; j < 256; j += 64, isc += 2, ql = ql[32..], u1 <<= 2, u2 <<= 2)
        {
            var (sc1, m1) = ScaleMin(isc, scales);
            var (sc2, m2) = ScaleMin(isc + 1, scales);
            float d1 = d * sc1, min1 = min * m1, d2 = d * sc2, min2 = min * m2;
            for (int l = 0; l < 32; l++) y[o++] = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - min1;
            for (int l = 0; l < 32; l++) y[o++] = d2 * ((ql[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - min2;
        }
    }

    // block_q6_K: ql[128], qh[64], scales[16] (int8), d (f16)
    private static void Q6_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        var ql = x[..128];
        var qh = x.Slice(128, 64);
        var sc = x.Slice(192, 16);
        float d = Half(x, 208);
        for (int n = 0; n < 256; n += 128, ql = ql[64..], qh = qh[32..], sc = sc[8..], y = y[128..])
        {
            for (int l = 0; l < 32; l++)
            {
                int isc = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (sbyte)sc[isc] * q1;
                y[l + 32] = d * (sbyte)sc[isc + 2] * q2;
                y[l + 64] = d * (sbyte)sc[isc + 4] * q3;
                y[l + 96] = d * (sbyte)sc[isc + 6] * q4;
            }
        }
    }
}

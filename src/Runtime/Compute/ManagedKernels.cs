using System.Buffers;
using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Compute;

/// <summary>Portable kernels over System.Numerics.Tensors; used when the native library cannot load.</summary>
public sealed partial class ManagedKernels : IKernels
{
    public static readonly ManagedKernels Instance = new();

    /// <summary>Activations are quantized to int8 in blocks of this many values for the integer weight types.</summary>
    public const int ActivationBlock = 32;

    public string Name => "managed";

    public unsafe void MatMul(ReadOnlySpan<float> x, int m, ModelTensor w, Span<float> y)
    {
        int n = w.Rows, k = w.Cols;
        if (x.Length < (long)m * k) throw new ArgumentException("x is shorter than m·k.", nameof(x));
        if (y.Length < (long)m * n) throw new ArgumentException("y is shorter than m·n.", nameof(y));

        if (w.Type == TensorType.F32)
        {
            var weights = new ReadOnlySpan<float>((void*)w.Data, checked(n * k));
            for (int i = 0; i < m; i++)
            {
                var xi = x.Slice(i * k, k);
                var yi = y.Slice(i * n, n);
                for (int j = 0; j < n; j++) yi[j] = TensorPrimitives.Dot(weights.Slice(j * k, k), xi);
            }
            return;
        }
        if (w.Type is TensorType.Int8 or TensorType.Q8_0 or TensorType.Q4_0)
        {
            IntegerMatMul(x, m, w, y);
            return;
        }

        // Other types: decode one weight row at a time and reuse it across all m input rows.
        float[] row = ArrayPool<float>.Shared.Rent(k);
        try
        {
            var rowSpan = row.AsSpan(0, k);
            for (int j = 0; j < n; j++)
            {
                w.ReadRow(j, rowSpan);
                for (int i = 0; i < m; i++) y[i * n + j] = TensorPrimitives.Dot(rowSpan, x.Slice(i * k, k));
            }
        }
        finally { ArrayPool<float>.Shared.Return(row); }
    }

    /// <summary>
    /// The integer path of the native kernels, to the bit (src/Runtime.Native/src/kernels.h states the contract): each
    /// input row quantized per block of 32 (d = max|x|/127, q = x·(1/d) rounded half to even); per block b the products
    /// q_w·q_x summed in 8 lanes of 4 values, each lane fused-multiply-added into its accumulator with
    /// c = weight scale · d; the lanes reduced in a fixed order; int8's row scale applied last. Identical bits keep
    /// both backends on the same side of every activation's rounding boundary.
    /// </summary>
    private static unsafe void IntegerMatMul(ReadOnlySpan<float> x, int m, ModelTensor w, Span<float> y)
    {
        int n = w.Rows, k = w.Cols, blocks = (k + ActivationBlock - 1) / ActivationBlock;
        sbyte[] xq = ArrayPool<sbyte>.Shared.Rent(m * k);
        float[] xd = ArrayPool<float>.Shared.Rent(m * blocks);
        sbyte[] wq = ArrayPool<sbyte>.Shared.Rent(k);
        float[] wd = ArrayPool<float>.Shared.Rent(blocks);
        Span<float> acc = stackalloc float[8];
        try
        {
            for (int i = 0; i < m; i++) QuantizeActivations(x.Slice(i * k, k), xq.AsSpan(i * k, k), xd.AsSpan(i * blocks, blocks));
            byte* data = (byte*)w.Data;
            for (int j = 0; j < n; j++)
            {
                float rowScale = DecodeIntegerRow(w.Type, data, n, k, j, wq, wd);
                for (int i = 0; i < m; i++)
                {
                    acc.Clear();
                    for (int b = 0; b < blocks; b++)
                    {
                        float c = wd[b] * xd[i * blocks + b];
                        int start = b * ActivationBlock, end = Math.Min(k, start + ActivationBlock);
                        for (int l = 0; l < 8 && start + 4 * l < end; l++)
                        {
                            int lane = 0;
                            for (int t = start + 4 * l; t < Math.Min(end, start + 4 * l + 4); t++) lane += wq[t] * xq[i * k + t];
                            acc[l] = MathF.FusedMultiplyAdd(lane, c, acc[l]);
                        }
                    }
                    float sum = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
                    y[i * n + j] = w.Type == TensorType.Int8 ? sum * rowScale : sum;
                }
            }
        }
        finally
        {
            ArrayPool<sbyte>.Shared.Return(xq);
            ArrayPool<float>.Shared.Return(xd);
            ArrayPool<sbyte>.Shared.Return(wq);
            ArrayPool<float>.Shared.Return(wd);
        }
    }

    /// <summary>Blocks of 32 (the last may be shorter): scale d = max|x|/127, q = round-half-even(x · (1/d)).</summary>
    public static void QuantizeActivations(ReadOnlySpan<float> x, Span<sbyte> q, Span<float> scales)
    {
        for (int b = 0, start = 0; start < x.Length; b++, start += ActivationBlock)
        {
            var block = x.Slice(start, Math.Min(ActivationBlock, x.Length - start));
            float amax = 0;
            foreach (float v in block) amax = MathF.Max(amax, MathF.Abs(v));
            float d = amax / 127;
            float id = d != 0 ? 1 / d : 0;
            scales[b] = d;
            for (int t = 0; t < block.Length; t++) q[start + t] = (sbyte)MathF.Round(block[t] * id);
        }
    }

    /// <summary>
    /// Row <paramref name="row"/>'s int8 values and per-block scales; returns int8's row scale (the blocks' scales
    /// are then 1, as the row scale is applied after the sum) or 1 for the block types.
    /// </summary>
    private static unsafe float DecodeIntegerRow(TensorType type, byte* data, int rows, int k, int row, Span<sbyte> q, Span<float> scales)
    {
        switch (type)
        {
            case TensorType.Int8:
                new ReadOnlySpan<sbyte>(data + (long)row * k, k).CopyTo(q);
                scales[..((k + ActivationBlock - 1) / ActivationBlock)].Fill(1f);
                return Unsafe.ReadUnaligned<float>(data + (long)rows * k + (long)row * 4);
            case TensorType.Q8_0:
            {
                var src = new ReadOnlySpan<byte>(data + (long)row * (k / 32 * 34), k / 32 * 34);
                for (int b = 0; b < k / 32; b++)
                {
                    scales[b] = (float)BinaryPrimitives.ReadHalfLittleEndian(src[(b * 34)..]);
                    for (int t = 0; t < 32; t++) q[b * 32 + t] = (sbyte)src[b * 34 + 2 + t];
                }
                return 1f;
            }
            default:
            {
                var src = new ReadOnlySpan<byte>(data + (long)row * (k / 32 * 18), k / 32 * 18);
                for (int b = 0; b < k / 32; b++)
                {
                    scales[b] = (float)BinaryPrimitives.ReadHalfLittleEndian(src[(b * 18)..]);
                    for (int t = 0; t < 16; t++)
                    {
                        byte packed = src[b * 18 + 2 + t];
                        q[b * 32 + t] = (sbyte)((packed & 0x0F) - 8);
                        q[b * 32 + 16 + t] = (sbyte)((packed >> 4) - 8);
                    }
                }
                return 1f;
            }
        }
    }
}

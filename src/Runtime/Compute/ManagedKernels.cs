using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Compute;

/// <summary>Portable kernels over System.Numerics.Tensors; used when the native library cannot load.</summary>
public sealed class ManagedKernels : IKernels
{
    public static readonly ManagedKernels Instance = new();

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
}

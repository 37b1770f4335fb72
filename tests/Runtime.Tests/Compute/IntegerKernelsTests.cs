using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Model;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Compute;

/// <summary>
/// The int8/Q8_0/Q4_0 matmul of every backend against an oracle written from the contract: activations quantized per
/// block of 32 (d = max|x|/127, q = round-half-even(x/d) computed as x·(1/d)), weights dequantized, products in double.
/// </summary>
public sealed class IntegerKernelsTests
{
    public static TheoryData<TensorType, int, int, int> Cases()
    {
        var data = new TheoryData<TensorType, int, int, int>();
        foreach (var type in new[] { TensorType.Int8, TensorType.Q8_0, TensorType.Q4_0 })
            foreach (var (m, k, n) in new[] { (1, 32, 3), (1, 2048, 65), (2, 64, 8), (5, 160, 37), (17, 96, 9) })
                data.Add(type, m, k, n);
        return data;
    }

    [Theory, MemberData(nameof(Cases))]
    public void EveryBackendMatchesTheContract(TensorType type, int m, int k, int n)
    {
        var rng = new Random(k * 7919 + n * 31 + m + (int)type);
        using var w = UnmanagedTensor.Random(type, n, k, rng);
        var x = new float[m * k];
        for (int i = 0; i < x.Length; i++) x[i] = UnmanagedTensor.NextFloat(rng) * (i % 5 == 0 ? 4 : 1);
        x.AsSpan(0, 32).Clear(); // an all-zero block: scale 0

        var (oracle, bound) = Oracle(x, m, k, w.Tensor);
        using var best = Native(2, NativeIsa.Best);
        using var scalar = Native(3, NativeIsa.Scalar);
        foreach (IKernels kernels in new IKernels[] { best, scalar, ManagedKernels.Instance })
        {
            var y = new float[m * n];
            kernels.MatMul(x, m, w.Tensor, y);
            for (int i = 0; i < y.Length; i++)
                Assert.True(Math.Abs(y[i] - oracle[i]) <= bound[i],
                    $"{kernels.Name} {type} m={m} k={k} n={n}: y[{i}] = {y[i]}, contract {oracle[i]} (bound {bound[i]:g3})");
        }
    }

    [Fact]
    public void ActivationRounding_IsHalfToEven()
    {
        // A block whose max is 127 has d = 1, so each ±t.5 is rounded as written; one-hot q8 rows read them back.
        const int k = 32;
        var x = new float[k];
        for (int t = 0; t < k; t++) x[t] = t % 8 - 3.5f;
        x[31] = 127;
        var rows = new float[k * k];
        for (int j = 0; j < k; j++) rows[j * k + j] = 127; // after Q8_0 encoding: d = 1, value 127 at j
        using var w = Quantization.EncodedTensor.Create(TensorType.Q8_0, k, k, rows);
        using var native = Native(1, NativeIsa.Best);
        foreach (IKernels kernels in new IKernels[] { native, ManagedKernels.Instance })
        {
            var y = new float[k];
            kernels.MatMul(x, 1, w.Tensor, y);
            for (int j = 0; j < k; j++) Assert.Equal(127 * Math.Round(x[j], MidpointRounding.ToEven), y[j]);
        }
    }

    private static (double[] Y, double[] Bound) Oracle(float[] x, int m, int k, ModelTensor w)
    {
        int n = w.Rows;
        var q = new int[k];
        var d = new float[k / 32];
        var row = new float[k];
        var y = new double[m * n];
        var bound = new double[m * n];
        for (int i = 0; i < m; i++)
        {
            for (int b = 0; b < k / 32; b++)
            {
                float amax = 0;
                for (int t = 0; t < 32; t++) amax = Math.Max(amax, Math.Abs(x[i * k + b * 32 + t]));
                d[b] = amax / 127f;
                float id = d[b] == 0 ? 0 : 1f / d[b];
                for (int t = 0; t < 32; t++) q[b * 32 + t] = (int)Math.Round(x[i * k + b * 32 + t] * id, MidpointRounding.ToEven);
            }
            for (int j = 0; j < n; j++)
            {
                w.ReadRow(j, row);
                double sum = 0, abs = 0;
                for (int t = 0; t < k; t++)
                {
                    double p = (double)row[t] * d[t / 32] * q[t];
                    sum += p;
                    abs += Math.Abs(p);
                }
                y[i * n + j] = sum;
                // Float summation in blocks of 32 in any order: a few ulps of the absolute sum per block.
                bound[i * n + j] = (k / 32 + 4) * 1.2e-7 * abs + 1e-30;
            }
        }
        return (y, bound);
    }

    private static NativeKernels Native(int threads, NativeIsa isa)
    {
        Assert.True(NativeKernels.TryCreate(threads, isa, out var kernels, out var reason), reason);
        return kernels;
    }
}

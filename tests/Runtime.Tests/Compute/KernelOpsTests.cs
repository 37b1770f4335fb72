using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Model;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Compute;

/// <summary>
/// The element-wise and row-wise operators: the native library (best instruction set and the scalar reference,
/// 1 and 3 threads) returns the managed fallback's bits, which is what keeps quantized models identical on both;
/// the C tests (src/Runtime.Native/tests/test_ops.c) check accuracy against double precision.
/// </summary>
public class KernelOpsTests
{
    public static IEnumerable<object[]> Levels() =>
        [[NativeIsa.Best, 1], [NativeIsa.Best, 3], [NativeIsa.Scalar, 1]];

    private static NativeKernels Native(NativeIsa isa, int threads) =>
        NativeKernels.TryCreate(threads, isa, out var kernels, out var reason) ? kernels : throw new InvalidOperationException(reason);

    private static float[] Random(Random rng, int count, float scale)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = (rng.NextSingle() * 2 - 1) * scale;
        return values;
    }

    private static void AssertSameBits(float[] expected, float[] actual, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]) && !(float.IsNaN(expected[i]) && float.IsNaN(actual[i])))
                Assert.Fail($"{what} [{i} of {expected.Length}]: managed {expected[i]:R}, native {actual[i]:R}");
    }

    [Theory, MemberData(nameof(Levels))]
    public void Norms_NativeEqualsManaged(NativeIsa isa, int threads)
    {
        using var native = Native(isa, threads);
        var managed = ManagedKernels.Instance;
        var rng = new Random(11);
        foreach (int dim in new[] { 1, 7, 33, 2048, 2051 })
            foreach (int rows in new[] { 1, 6, 40 })
            {
                var x = Random(rng, rows * dim, 4f);
                var w = Random(rng, 2 * dim, 1.5f);
                var b = Random(rng, 2 * dim, 0.5f);
                var expected = new float[rows * dim];
                var actual = new float[rows * dim];
                foreach (float offset in new[] { 0f, 1f })
                {
                    managed.RmsNorm(x, rows, dim, w.AsSpan(0, dim), offset, 1e-6f, expected);
                    native.RmsNorm(x, rows, dim, w.AsSpan(0, dim), offset, 1e-6f, actual);
                    AssertSameBits(expected, actual, $"rms_norm+{offset} {rows}×{dim} on {native}");
                }
                // Two weight rows alternate, as per-head qk-norm weights do; with and without bias.
                managed.LayerNorm(x, rows, dim, w, b, 1e-5f, expected);
                native.LayerNorm(x, rows, dim, w, b, 1e-5f, actual);
                AssertSameBits(expected, actual, $"layer_norm {rows}×{dim} on {native}");
                managed.LayerNorm(x, rows, dim, w, default, 1e-5f, expected);
                x.CopyTo(actual, 0);
                native.LayerNorm(actual, rows, dim, w, default, 1e-5f, actual);
                AssertSameBits(expected, actual, $"layer_norm in place, no bias {rows}×{dim} on {native}");
            }
    }

    [Theory, MemberData(nameof(Levels))]
    public void Rope_NativeEqualsManaged(NativeIsa isa, int threads)
    {
        using var native = Native(isa, threads);
        var managed = ManagedKernels.Instance;
        var rng = new Random(12);
        foreach (var (headDim, rotary) in new[] { (64, 64), (80, 32), (256, 256), (10, 6) })
            foreach (int rows in new[] { 1, 300 })
            {
                int half = rotary / 2, heads = 3, pos0 = 5;
                var invFreq = new float[half];
                for (int i = 0; i < half; i++) invFreq[i] = (float)(1.0 / Math.Pow(10000, 2.0 * i / rotary));
                var (cosM, sinM, cosN, sinN) = (new float[rows * half], new float[rows * half], new float[rows * half], new float[rows * half]);
                managed.RopeTables(pos0, rows, invFreq, cosM, sinM);
                native.RopeTables(pos0, rows, invFreq, cosN, sinN);
                AssertSameBits(cosM, cosN, "cos table");
                AssertSameBits(sinM, sinN, "sin table");

                var expected = Random(rng, rows * heads * headDim, 2f);
                var actual = (float[])expected.Clone();
                managed.Rope(expected, rows, heads, headDim, rotary, cosM, sinM);
                native.Rope(actual, rows, heads, headDim, rotary, cosN, sinN);
                AssertSameBits(expected, actual, $"rope {headDim}/{rotary} × {rows} on {native}");
            }
    }

    [Theory, MemberData(nameof(Levels))]
    public void ElementWise_NativeEqualsManaged(NativeIsa isa, int threads)
    {
        using var native = Native(isa, threads);
        var managed = ManagedKernels.Instance;
        var rng = new Random(13);
        foreach (int count in new[] { 1, 9, 1000, 70001 })
        {
            var x = Random(rng, count, 12f);
            var up = Random(rng, count, 3f);
            float[] specials = [0f, -0f, 0.6249f, -0.6251f, 89f, -89f, 1e4f, -1e4f, float.PositiveInfinity, float.NegativeInfinity, float.NaN];
            specials.AsSpan(0, Math.Min(count, specials.Length)).CopyTo(x);
            var expected = new float[count];
            var actual = new float[count];
            foreach (var activation in new[] { Activation.Silu, Activation.GeluTanh, Activation.GeluErf })
            {
                managed.Activate(activation, x, expected);
                native.Activate(activation, x, actual);
                AssertSameBits(expected, actual, $"{activation} × {count} on {native}");
                managed.GatedActivate(activation, x, up, expected);
                native.GatedActivate(activation, x, up, actual);
                AssertSameBits(expected, actual, $"gated {activation} × {count} on {native}");
            }
            managed.Softcap(x, 30f, expected);
            native.Softcap(x, 30f, actual);
            AssertSameBits(expected, actual, $"softcap × {count} on {native}");
            managed.Add(x, up, expected);
            native.Add(x, up, actual);
            AssertSameBits(expected, actual, $"add × {count} on {native}");
        }
    }

    [Fact]
    public void Managed_Activations_CloseToDoublePrecision()
    {
        // The contract's polynomials against the definitions; the fixtures need far less, the C tests bound the same.
        var managed = ManagedKernels.Instance;
        var x = new float[4001];
        for (int i = 0; i < x.Length; i++) x[i] = -20f + i * 0.01f;
        var y = new float[x.Length];
        foreach (var activation in new[] { Activation.Silu, Activation.GeluTanh, Activation.GeluErf })
        {
            managed.Activate(activation, x, y);
            for (int i = 0; i < x.Length; i++)
            {
                double v = x[i];
                double exact = activation switch
                {
                    Activation.Silu => v / (1 + Math.Exp(-v)),
                    Activation.GeluTanh => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v))),
                    _ => 0.5 * v * (1 + Erf(v / Math.Sqrt(2))),
                };
                Assert.True(Math.Abs(y[i] - exact) <= 1e-6 + 2e-7 * Math.Abs(exact), $"{activation}({x[i]}) = {y[i]}, exact {exact}");
            }
        }
    }

    [Fact]
    public void Native_RejectsBadArguments()
    {
        using var native = Native(NativeIsa.Best, 1);
        var x = new float[16];
        Assert.Throws<ArgumentException>(() => native.RmsNorm(x, 3, 8, new float[8], 0f, 1e-6f, new float[24]));
        Assert.Throws<ArgumentException>(() => native.LayerNorm(x, 2, 8, new float[12], default, 1e-5f, new float[16]));
        Assert.Throws<ArgumentOutOfRangeException>(() => native.Rope(x, 1, 2, 8, 5, new float[4], new float[4]));
        Assert.Throws<ArgumentOutOfRangeException>(() => native.Activate((Activation)7, x, x));
        Assert.Throws<ArgumentOutOfRangeException>(() => native.Softcap(x, 0f, x));
        // What the C boundary rejects comes back as a NativeKernelException with the library's status.
        var error = Assert.Throws<NativeKernelException>(() => native.RmsNorm(x, 2, 8, new float[8], 0f, float.NaN, x));
        Assert.Equal(9, error.Status);
    }

    /// <summary>erf by its Maclaurin series below 3 and the continued fraction of erfc above, in double.</summary>
    private static double Erf(double x)
    {
        double ax = Math.Abs(x);
        double r;
        if (ax < 3)
        {
            double term = ax, sum = ax;
            for (int n = 1; n < 200 && Math.Abs(term) > 1e-17 * sum; n++)
            {
                term *= -ax * ax / n;
                sum += term / (2 * n + 1);
            }
            r = 2 / Math.Sqrt(Math.PI) * sum;
        }
        else
        {
            double f = 0;
            for (int n = 60; n >= 1; n--) f = n / 2.0 / (ax + f);
            r = 1 - Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / (ax + f);
        }
        return x < 0 ? -r : r;
    }
}

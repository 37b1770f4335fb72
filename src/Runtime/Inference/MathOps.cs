using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Inference;

/// <summary>
/// The element-wise and row-wise building blocks of the forward pass, in the float contract that the native
/// kernels follow (src/Runtime.Native/src/kernels.h): the same operations in the same order, with MathF.FusedMultiplyAdd
/// where the contract fuses, so that managed and native passes return the same bits. A quantized model's next
/// activations are a step function of these outputs; backends that differed in the last ulp would drift apart.
/// </summary>
internal static class MathOps
{
    private const float ExpMin = -87.33654f, ExpMax = 88.3762626647949f;
    private const float Log2E = 1.44269504088896341f, Ln2Hi = 0.693359375f, Ln2Lo = -2.12194440e-4f;
    private const float ExpP0 = 1.9875691500e-4f, ExpP1 = 1.3981999507e-3f, ExpP2 = 8.3334519073e-3f;
    private const float ExpP3 = 4.1665795894e-2f, ExpP4 = 1.6666665459e-1f, ExpP5 = 5.0000001201e-1f;
    private const float TanhSmall = 0.625f;
    private const float TanhP0 = -5.70498872745e-3f, TanhP1 = 2.06390887954e-2f, TanhP2 = -5.37397155531e-2f;
    private const float TanhP3 = 1.33314422036e-1f, TanhP4 = -3.33332819422e-1f;
    private const float Sqrt2OverPi = 0.7978845608028654f, GeluCubic = 0.044715f, SqrtHalf = 0.70710678118654752f;
    private const float ErfcP0 = 0.17087277f, ErfcP1 = -0.82215223f, ErfcP2 = 1.48851587f, ErfcP3 = -1.13520398f;
    private const float ErfcP4 = 0.27886807f, ErfcP5 = -0.18628806f, ErfcP6 = 0.09678418f, ErfcP7 = 0.37409196f;
    private const float ErfcP8 = 1.00002368f, ErfcP9 = -1.26551223f;

    /// <summary>The contract's row sum: 8 lanes over the row zero-padded to a multiple of 8, reduced in a fixed order.</summary>
    private static float SumRow(ReadOnlySpan<float> x, bool squares, float shift)
    {
        Span<float> acc = stackalloc float[8];
        acc.Clear();
        for (int i = 0; i < x.Length; i += 8)
            for (int l = 0; l < 8; l++)
            {
                bool inRow = i + l < x.Length;
                if (squares)
                {
                    float d = inRow ? x[i + l] - shift : 0f;
                    acc[l] = MathF.FusedMultiplyAdd(d, d, acc[l]);
                }
                else
                {
                    acc[l] = acc[l] + (inRow ? x[i + l] : 0f);
                }
            }
        return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    }

    /// <summary>y = x · 1/sqrt(mean(x²) + eps) · (weightOffset + w); Gemma's (1 + w) is offset 1.</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> w, float eps, float weightOffset, Span<float> y)
    {
        float inv = 1f / MathF.Sqrt(SumRow(x, squares: true, 0f) / x.Length + eps);
        for (int i = 0; i < x.Length; i++) y[i] = (x[i] * inv) * (weightOffset + w[i]);
    }

    /// <summary>y = (x − mean) · 1/sqrt(variance + eps) · w + b; an empty bias adds nothing.</summary>
    public static void LayerNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, float eps, Span<float> y)
    {
        float mean = SumRow(x, squares: false, 0f) / x.Length;
        float inv = 1f / MathF.Sqrt(SumRow(x, squares: true, mean) / x.Length + eps);
        for (int i = 0; i < x.Length; i++)
        {
            float v = ((x[i] - mean) * inv) * w[i];
            y[i] = b.IsEmpty ? v : v + b[i];
        }
    }

    public static float Activate(Activation activation, float x) => activation switch
    {
        Activation.Silu => x / (1f + Exp(-x)),
        // 0.5·x·(1 + tanh u) as x / (1 + e^−2u): the same function without 1 + tanh's cancellation for x < 0.
        Activation.GeluTanh => x / (1f + Exp(-2f * (Sqrt2OverPi * MathF.FusedMultiplyAdd(GeluCubic, (x * x) * x, x)))),
        _ => GeluErf(x),
    };

    /// <summary>x·Φ(x) with Φ(x) = erfc(−x/√2)/2 and Numerical Recipes' erfc (relative error below 1.2e-7).</summary>
    private static float GeluErf(float x)
    {
        float z = MathF.Abs(x) * SqrtHalf;
        float t = 1f / MathF.FusedMultiplyAdd(0.5f, z, 1f);
        float p = ErfcP0;
        p = MathF.FusedMultiplyAdd(p, t, ErfcP1);
        p = MathF.FusedMultiplyAdd(p, t, ErfcP2);
        p = MathF.FusedMultiplyAdd(p, t, ErfcP3);
        p = MathF.FusedMultiplyAdd(p, t, ErfcP4);
        p = MathF.FusedMultiplyAdd(p, t, ErfcP5);
        p = MathF.FusedMultiplyAdd(p, t, ErfcP6);
        p = MathF.FusedMultiplyAdd(p, t, ErfcP7);
        p = MathF.FusedMultiplyAdd(p, t, ErfcP8);
        p = MathF.FusedMultiplyAdd(p, t, ErfcP9);
        float halfErfc = 0.5f * (t * Exp(MathF.FusedMultiplyAdd(-z, z, p)));
        return x * (x < 0f ? halfErfc : 1f - halfErfc);
    }

    /// <summary>e^x by Cephes' expf polynomial: +inf above 88.376, the input clamped below at −87.34, NaN kept.</summary>
    public static float Exp(float x)
    {
        if (x > ExpMax) return float.PositiveInfinity;
        if (float.IsNaN(x)) return x;
        x = Math.Clamp(x, ExpMin, ExpMax);
        float n = MathF.Round(x * Log2E);
        float r = MathF.FusedMultiplyAdd(-n, Ln2Hi, x);
        r = MathF.FusedMultiplyAdd(-n, Ln2Lo, r);
        float p = ExpP0;
        p = MathF.FusedMultiplyAdd(p, r, ExpP1);
        p = MathF.FusedMultiplyAdd(p, r, ExpP2);
        p = MathF.FusedMultiplyAdd(p, r, ExpP3);
        p = MathF.FusedMultiplyAdd(p, r, ExpP4);
        p = MathF.FusedMultiplyAdd(p, r, ExpP5);
        p = MathF.FusedMultiplyAdd(p, r * r, r);
        p = p + 1f;
        return p * BitConverter.Int32BitsToSingle(((int)n + 127) << 23);
    }

    /// <summary>tanh: Cephes' odd polynomial below 0.625, else 1 − 2/(e^2|x| + 1) with x's sign.</summary>
    public static float Tanh(float x)
    {
        float ax = MathF.Abs(x);
        if (ax < TanhSmall)
        {
            float z = x * x;
            float p = TanhP0;
            p = MathF.FusedMultiplyAdd(p, z, TanhP1);
            p = MathF.FusedMultiplyAdd(p, z, TanhP2);
            p = MathF.FusedMultiplyAdd(p, z, TanhP3);
            p = MathF.FusedMultiplyAdd(p, z, TanhP4);
            return MathF.FusedMultiplyAdd(p * z, x, x);
        }
        float e = Exp(ax + ax);
        return MathF.CopySign(1f - 2f / (e + 1f), x);
    }

    /// <summary>Rotates pairs (i, i + half) of one head, half = cos.Length: the "rotate_half" (NeoX) convention.</summary>
    public static void Rope(Span<float> head, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = cos.Length;
        for (int i = 0; i < half; i++)
        {
            float x1 = head[i], x2 = head[i + half];
            head[i] = x1 * cos[i] - x2 * sin[i];
            head[i + half] = x2 * cos[i] + x1 * sin[i];
        }
    }

    /// <summary>ALiBi slopes as BLOOM's build_alibi_tensor, including its rule for head counts that are not a power of two.</summary>
    public static float[] AlibiSlopes(int heads)
    {
        int closest = 1 << (int)Math.Floor(Math.Log2(heads));
        double Base(int n) => Math.Pow(2, -Math.Pow(2, -(Math.Log2(n) - 3)));
        var slopes = new float[heads];
        double b = Base(closest);
        for (int i = 0; i < closest; i++) slopes[i] = (float)Math.Pow(b, i + 1);
        double extra = Base(2 * closest);
        for (int i = 0; i < heads - closest; i++) slopes[closest + i] = (float)Math.Pow(extra, 2 * i + 1);
        return slopes;
    }
}

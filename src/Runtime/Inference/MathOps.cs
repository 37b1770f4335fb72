using System.Numerics.Tensors;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Inference;

/// <summary>The element-wise building blocks of the forward pass, in f32 as transformers computes them.</summary>
internal static class MathOps
{
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> w, float eps, bool plusOne, Span<float> y)
    {
        float meanSquare = TensorPrimitives.SumOfSquares(x) / x.Length;
        float inv = 1f / MathF.Sqrt(meanSquare + eps);
        for (int i = 0; i < x.Length; i++) y[i] = x[i] * inv * (plusOne ? 1f + w[i] : w[i]);
    }

    public static void LayerNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, float eps, Span<float> y)
    {
        float mean = TensorPrimitives.Sum(x) / x.Length;
        float variance = 0;
        for (int i = 0; i < x.Length; i++) { float d = x[i] - mean; variance += d * d; }
        variance /= x.Length;
        float inv = 1f / MathF.Sqrt(variance + eps);
        for (int i = 0; i < x.Length; i++) y[i] = (x[i] - mean) * inv * w[i] + (b.IsEmpty ? 0f : b[i]);
    }

    public static void Norm(NormKind kind, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, float eps, Span<float> y)
    {
        switch (kind)
        {
            case NormKind.RmsNorm: RmsNorm(x, w, eps, plusOne: false, y); break;
            case NormKind.RmsNormPlusOne: RmsNorm(x, w, eps, plusOne: true, y); break;
            default: LayerNorm(x, w, b, eps, y); break;
        }
    }

    public static float Activate(Activation activation, float x) => activation switch
    {
        Activation.Silu => x / (1f + MathF.Exp(-x)),
        Activation.GeluTanh => 0.5f * x * (1f + MathF.Tanh(0.7978845608028654f * (x + 0.044715f * x * x * x))),
        _ => (float)(0.5 * x * (1.0 + Erf(x / Math.Sqrt(2.0)))),
    };

    /// <summary>erf to ~1e-15 (W. J. Cody's rational approximations); .NET has no Math.Erf.</summary>
    public static double Erf(double x)
    {
        double ax = Math.Abs(x);
        if (ax < 0.5)
        {
            double t = x * x;
            double top = (((0.185777706184603153 * t + 3.16112374387056560) * t + 113.864154151050156) * t + 377.485237685302021) * t + 3209.37758913846947;
            double bottom = (((t + 23.6012909523441209) * t + 244.024637934444173) * t + 1282.61652607737228) * t + 2844.23683343917062;
            return x * top / bottom;
        }
        double erfc;
        if (ax < 4.0)
        {
            double top = (((((((5.64188496988670089e-1 * ax + 8.88314979438837594) * ax + 66.1191906371416295) * ax + 298.635138197400131) * ax
                + 881.952221241769090) * ax + 1712.04761263407058) * ax + 2051.07837782607147) * ax + 1230.33935479799725);
            double bottom = (((((((ax + 15.7449261107098347) * ax + 117.693950891312499) * ax + 537.181101862009858) * ax
                + 1621.38957456669019) * ax + 3290.79923573345963) * ax + 4362.61909014324716) * ax + 3439.36767414372164) * ax + 1230.33935480374942;
            erfc = Math.Exp(-ax * ax) * top / bottom;
        }
        else
        {
            double z = 1.0 / (ax * ax);
            double top = ((((1.63153871373020978e-2 * z + 3.05326634961232344e-1) * z + 3.60344899949804439e-1) * z + 1.25781726111229246e-1) * z + 1.60837851487422766e-2) * z + 6.58749161529837803e-4;
            double bottom = ((((z + 2.56852019228982242) * z + 1.87295284992346725) * z + 5.27905102951428412e-1) * z + 6.05183413124413191e-2) * z + 2.33520497626869185e-3;
            erfc = Math.Exp(-ax * ax) / ax * (0.564189583547756287 - z * top / bottom);
        }
        double r = 1.0 - erfc;
        return x < 0 ? -r : r;
    }

    /// <summary>Rotates the first rotaryDim dims of one head by the "rotate_half" (NeoX) convention.</summary>
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

using System.Numerics.Tensors;
using OnDeviceLlm.Runtime.Inference;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Compute;

/// <summary>The element-wise and row-wise operators: <see cref="MathOps"/>, in the native kernels' float contract.</summary>
public sealed partial class ManagedKernels
{
    public void RmsNorm(ReadOnlySpan<float> x, int rows, int dim, ReadOnlySpan<float> weight, float weightOffset, float eps, Span<float> y)
    {
        OpArguments.Rows(x.Length, rows, dim, weight.Length, 0, y.Length);
        int weightRows = weight.Length / dim;
        for (int i = 0; i < rows; i++)
            MathOps.RmsNorm(x.Slice(i * dim, dim), weight.Slice(i % weightRows * dim, dim), eps, weightOffset, y.Slice(i * dim, dim));
    }

    public void LayerNorm(ReadOnlySpan<float> x, int rows, int dim, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps, Span<float> y)
    {
        OpArguments.Rows(x.Length, rows, dim, weight.Length, bias.Length, y.Length);
        int weightRows = weight.Length / dim;
        for (int i = 0; i < rows; i++)
        {
            int r = i % weightRows * dim;
            MathOps.LayerNorm(x.Slice(i * dim, dim), weight.Slice(r, dim), bias.IsEmpty ? default : bias.Slice(r, dim), eps, y.Slice(i * dim, dim));
        }
    }

    public void RopeTables(int pos0, int rows, ReadOnlySpan<float> invFreq, Span<float> cos, Span<float> sin)
    {
        int half = invFreq.Length;
        OpArguments.RopeTables(pos0, rows, half, cos.Length, sin.Length);
        for (int t = 0; t < rows; t++)
        {
            float position = pos0 + t;
            for (int i = 0; i < half; i++)
            {
                // The angle is an f32 product in transformers; cos/sin of it are taken at higher precision.
                float angle = position * invFreq[i];
                cos[t * half + i] = (float)Math.Cos(angle);
                sin[t * half + i] = (float)Math.Sin(angle);
            }
        }
    }

    public void Rope(Span<float> x, int rows, int heads, int headDim, int rotaryDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        OpArguments.Rope(x.Length, rows, heads, headDim, rotaryDim, cos.Length, sin.Length);
        int half = rotaryDim / 2;
        for (int t = 0; t < rows; t++)
        {
            var c = cos.Slice(t * half, half);
            var s = sin.Slice(t * half, half);
            for (int h = 0; h < heads; h++) MathOps.Rope(x.Slice((t * heads + h) * headDim, headDim), c, s);
        }
    }

    public void Activate(Activation activation, ReadOnlySpan<float> x, Span<float> y)
    {
        OpArguments.Activation(activation);
        OpArguments.Elementwise(x.Length, x.Length, y.Length);
        for (int i = 0; i < x.Length; i++) y[i] = MathOps.Activate(activation, x[i]);
    }

    public void GatedActivate(Activation activation, ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> y)
    {
        OpArguments.Activation(activation);
        OpArguments.Elementwise(gate.Length, up.Length, y.Length);
        for (int i = 0; i < gate.Length; i++) y[i] = up[i] * MathOps.Activate(activation, gate[i]);
    }

    public void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y)
    {
        OpArguments.Elementwise(a.Length, b.Length, y.Length);
        TensorPrimitives.Add(a, b[..a.Length], y[..a.Length]);
    }

    public void Softcap(ReadOnlySpan<float> x, float cap, Span<float> y)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cap);
        OpArguments.Elementwise(x.Length, x.Length, y.Length);
        for (int i = 0; i < x.Length; i++) y[i] = cap * MathOps.Tanh(x[i] / cap);
    }
}

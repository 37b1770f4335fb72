using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Compute;

/// <summary>
/// The compute operators the forward pass delegates. Implementations: <see cref="NativeKernels"/>
/// (the bundled C library through LibraryImport) and <see cref="ManagedKernels"/> (System.Numerics.Tensors).
/// </summary>
public interface IKernels
{
    /// <summary>Short name for logs and benchmarks ("native-avx2", "managed").</summary>
    string Name { get; }

    /// <summary>y[m, n] = x[m, k] · Wᵀ for W stored [n, k] in any <see cref="TensorType"/>; x and y are row-major f32.</summary>
    void MatMul(ReadOnlySpan<float> x, int m, ModelTensor w, Span<float> y);

    // The element-wise and row-wise operators below accept y overlapping an input only as the very same span (in place).

    /// <summary>
    /// y[i] = x[i] · 1/sqrt(mean(x[i]²) + eps) · (<paramref name="weightOffset"/> + w[i mod wRows]) for each of
    /// <paramref name="rows"/> rows of <paramref name="dim"/>; w holds wRows rows of dim (one per head for qk-norm).
    /// Offset 1 is Gemma's (1 + w).
    /// </summary>
    void RmsNorm(ReadOnlySpan<float> x, int rows, int dim, ReadOnlySpan<float> weight, float weightOffset, float eps, Span<float> y);

    /// <summary>y[i] = (x[i] − mean) · 1/sqrt(variance + eps) · w[i mod wRows] + b[i mod wRows]; an empty bias adds nothing.</summary>
    void LayerNorm(ReadOnlySpan<float> x, int rows, int dim, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps, Span<float> y);

    /// <summary>cos/sin[t·half + i] of the f32 angle (pos0 + t) · invFreq[i], t &lt; rows, taken in double as transformers does.</summary>
    void RopeTables(int pos0, int rows, ReadOnlySpan<float> invFreq, Span<float> cos, Span<float> sin);

    /// <summary>
    /// Rotates the first <paramref name="rotaryDim"/> dims of every head of x[rows, heads, headDim] by the rotate_half
    /// (NeoX) pairing (i, i + rotaryDim/2), with row t of the tables from <see cref="RopeTables"/>.
    /// </summary>
    void Rope(Span<float> x, int rows, int heads, int headDim, int rotaryDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin);

    /// <summary>y = act(x), element-wise over x.Length values.</summary>
    void Activate(Activation activation, ReadOnlySpan<float> x, Span<float> y);

    /// <summary>y = act(gate) · up, element-wise over gate.Length values (GeGLU, SwiGLU).</summary>
    void GatedActivate(Activation activation, ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> y);

    /// <summary>y = a + b, element-wise over a.Length values (residual connections).</summary>
    void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y);

    /// <summary>y = cap · tanh(x / cap), element-wise over x.Length values (Gemma 2's final logit soft-capping).</summary>
    void Softcap(ReadOnlySpan<float> x, float cap, Span<float> y);
    /// <summary>
    /// Causal attention over an f32 KV cache: output[t, h] = softmax of the scores of query row t, head h against every
    /// visible key (shifted by its maximum), times the values; q and output are [Queries, Heads, HeadDim].
    /// </summary>
    void Attention(in AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, Span<float> output);

    /// <summary>As the f32 overload, over an f16 KV cache.</summary>
    void Attention(in AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<Half> keys, ReadOnlySpan<Half> values, Span<float> output);
}

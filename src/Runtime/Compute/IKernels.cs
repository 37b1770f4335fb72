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

    /// <summary>
    /// Causal attention over an f32 KV cache: output[t, h] = softmax of the scores of query row t, head h against every
    /// visible key (shifted by its maximum), times the values; q and output are [Queries, Heads, HeadDim].
    /// </summary>
    void Attention(in AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, Span<float> output);

    /// <summary>As the f32 overload, over an f16 KV cache.</summary>
    void Attention(in AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<Half> keys, ReadOnlySpan<Half> values, Span<float> output);
}

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
}

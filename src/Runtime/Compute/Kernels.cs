namespace OnDeviceLlm.Runtime.Compute;

/// <summary>Which kernel implementation to use.</summary>
public enum KernelBackend
{
    /// <summary>A CUDA GPU when one is usable, else the native library when it loads, else the managed kernels.</summary>
    Auto,
    /// <summary>The native library; an error when it cannot load.</summary>
    Native,
    /// <summary>The portable managed kernels (System.Numerics.Tensors).</summary>
    Managed,
    /// <summary>
    /// The whole forward pass on a CUDA GPU (<see cref="Inference.CudaTransformer"/>); an error when no device is usable.
    /// <see cref="Auto"/> also takes the GPU when one is usable. CPU kernels, where still needed, are Auto's.
    /// </summary>
    Cuda,
}

/// <summary>Kernel selection: the process-wide default and explicit choices.</summary>
public static class Kernels
{
    private static readonly Lazy<(IKernels Kernels, string? Reason)> s_default = new(() =>
        NativeKernels.TryCreate(0, out var native, out var reason)
            ? (native, null)
            : (ManagedKernels.Instance, reason));

    /// <summary>Native kernels on all physical cores when the library loads, else <see cref="ManagedKernels"/>. Lives for the process.</summary>
    public static IKernels Default => s_default.Value.Kernels;

    /// <summary>Why <see cref="Default"/> is the managed fallback; null when it is native.</summary>
    public static string? FallbackReason => s_default.Value.Reason;

    /// <summary>
    /// A new kernel instance for <paramref name="backend"/>; <paramref name="threads"/> 0 means one per
    /// physical core. Native instances own a thread pool: dispose them (they are <see cref="IDisposable"/>).
    /// </summary>
    public static IKernels Create(KernelBackend backend, int threads = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        switch (backend)
        {
            case KernelBackend.Managed:
                return ManagedKernels.Instance;
            case KernelBackend.Native:
                return NativeKernels.TryCreate(threads, out var native, out var reason)
                    ? native
                    : throw new OnDeviceLlmException($"The native kernels were requested but are unavailable: {reason}");
            case KernelBackend.Auto:
            case KernelBackend.Cuda:
                return NativeKernels.TryCreate(threads, out var auto, out _) ? auto : ManagedKernels.Instance;
            default:
                throw new ArgumentOutOfRangeException(nameof(backend), backend, "Unknown kernel backend.");
        }
    }
}

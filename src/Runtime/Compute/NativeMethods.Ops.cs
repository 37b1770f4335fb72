using System.Runtime.InteropServices;

namespace OnDeviceLlm.Runtime.Compute;

/// <summary>The element-wise and row-wise operators of odllm.h.</summary>
internal static partial class NativeMethods
{
    [LibraryImport(LibraryName)]
    internal static unsafe partial int odllm_rms_norm(ContextHandle context, float* x, long n, long dim, float* w, long wRows, float wOffset, float eps, float* y);

    [LibraryImport(LibraryName)]
    internal static unsafe partial int odllm_layer_norm(ContextHandle context, float* x, long n, long dim, float* w, float* b, long wRows, float eps, float* y);

    [LibraryImport(LibraryName)]
    internal static unsafe partial int odllm_rope_tables(long pos0, long n, float* invFreq, long half, float* cos, float* sin);

    [LibraryImport(LibraryName)]
    internal static unsafe partial int odllm_rope(ContextHandle context, float* x, long n, long heads, long headDim, long rotaryDim, float* cos, float* sin);

    [LibraryImport(LibraryName)]
    internal static unsafe partial int odllm_activate(ContextHandle context, int activation, float* x, long count, float* y);

    [LibraryImport(LibraryName)]
    internal static unsafe partial int odllm_gated_activate(ContextHandle context, int activation, float* gate, float* up, long count, float* y);

    [LibraryImport(LibraryName)]
    internal static unsafe partial int odllm_add(ContextHandle context, float* a, float* b, long count, float* y);

    [LibraryImport(LibraryName)]
    internal static unsafe partial int odllm_softcap(ContextHandle context, float* x, long count, float cap, float* y);
}

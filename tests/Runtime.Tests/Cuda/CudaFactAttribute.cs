using OnDeviceLlm.Runtime.Compute;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Cuda;

/// <summary>A fact that needs a CUDA device; reported as skipped, with the reason, on machines without one.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    public CudaFactAttribute()
    {
        if (CudaDevices.First is null) Skip = $"skipped: {CudaDevices.UnavailableReason}";
    }
}

/// <summary>A theory that needs a CUDA device; reported as skipped, with the reason, on machines without one.</summary>
public sealed class CudaTheoryAttribute : TheoryAttribute
{
    public CudaTheoryAttribute()
    {
        if (CudaDevices.First is null) Skip = $"skipped: {CudaDevices.UnavailableReason}";
    }
}

/// <summary>A fact about behaviour without a GPU (errors, CPU fallback); skipped where a CUDA device is usable.</summary>
public sealed class NoCudaFactAttribute : FactAttribute
{
    public NoCudaFactAttribute()
    {
        if (CudaDevices.First is { } device) Skip = $"skipped: a CUDA device is present ({device})";
    }
}

using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;

namespace OnDeviceLlm.Runtime.Compute;

/// <summary>A call into the CUDA backend failed (device error, out of device memory, a shape it cannot run).</summary>
public sealed class CudaException : OnDeviceLlmException
{
    public CudaException(string message) : base(message) { }
}

/// <summary>One CUDA device as the backend library reports it.</summary>
public sealed record CudaDeviceInfo(int Index, string Name, int ComputeMajor, int ComputeMinor, long TotalMemory)
{
    public override string ToString() => $"{Name} (sm_{ComputeMajor}{ComputeMinor}, {TotalMemory / (1L << 30)} GiB)";
}

/// <summary>
/// The CUDA backend library (libodllm_cuda.so, src/Runtime.Native/src/cuda), loaded on first use only, so
/// machines without CUDA never touch it. Entry points are bound as unmanaged function pointers: no marshalling,
/// no allocation per call. Mirrors odllm_cuda.h.
/// </summary>
internal static unsafe class CudaNative
{
    internal const int AbiVersion = 3;
    internal const int StatusOk = 0;

    [StructLayout(LayoutKind.Sequential)]
    internal struct Config
    {
        public int Vocab, Hidden, Layers, Heads, KvHeads, HeadDim, Ffn;
        public int NormKind, Activation, Layout, RotaryDim, SlidingWindow;
        public float NormEps, EmbedScale, AttnScale, AttnSoftcap, FinalSoftcap;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct Matrix
    {
        public nint Data;
        public long Bytes;
        public int Type, Rows, Cols;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct Layer
    {
        public Matrix Wq, Wk, Wv, Wo, Up, Down, Gate;
        public nint AttnNorm, AttnNormBias, FfnNorm, FfnNormBias, PostAttnNorm, PostFfnNorm;
        public nint Bq, Bk, Bv, Bo, BUp, BDown, QNorm, KNorm;
        public int Sliding;
    }

    internal sealed class Api
    {
        public delegate* unmanaged<int> AbiVersion;
        public delegate* unmanaged<nint> LastError;
        public delegate* unmanaged<int*, int> DeviceCount;
        public delegate* unmanaged<int, byte*, int, int*, int*, long*, int> DeviceInfo;
        public delegate* unmanaged<int, Config*, Matrix*, Matrix*, float*, float*, float*, Layer*, float*, float*, nint*, int> ModelCreate;
        public delegate* unmanaged<nint, void> ModelFree;
        public delegate* unmanaged<nint, long> ModelWeightBytes;
        public delegate* unmanaged<nint, int, int, nint*, int> SequenceCreate;
        public delegate* unmanaged<nint, void> SequenceFree;
        public delegate* unmanaged<nint, int*, int, int, int, int, float*, int> SequenceForward;
        public delegate* unmanaged<nint, float*, long, int> SequenceSetOutput;
        public delegate* unmanaged<int, long, double*, int> MeasureBandwidth;

        public string LastErrorMessage => Marshal.PtrToStringUTF8(LastError()) ?? "";

        /// <summary>Throws <see cref="CudaException"/> with the library's message unless <paramref name="status"/> is OK.</summary>
        public void Check(int status, string what)
        {
            if (status != StatusOk) throw new CudaException($"The CUDA backend failed {what}: {LastErrorMessage}.");
        }
    }

    private static readonly Lazy<(Api? Api, string? Error)> s_api = new(Load);

    internal static string LibraryFileName => OperatingSystem.IsWindows() ? "odllm_cuda.dll" : "libodllm_cuda.so";

    /// <summary>The bound library, or null with the reason it could not be loaded.</summary>
    internal static bool TryGet([NotNullWhen(true)] out Api? api, [NotNullWhen(false)] out string? reason)
    {
        (api, reason) = s_api.Value;
        return api is not null;
    }

    /// <summary>Where the library is looked for: ODLLM_CUDA_LIBRARY, the runtimes/&lt;rid&gt;/native layout, the app folder.</summary>
    internal static IEnumerable<string> CandidatePaths()
    {
        string? overridePath = Environment.GetEnvironmentVariable("ODLLM_CUDA_LIBRARY");
        if (!string.IsNullOrEmpty(overridePath)) yield return overridePath;
        string baseDir = AppContext.BaseDirectory;
        yield return Path.Combine(baseDir, "runtimes", NativeMethods.HostRid(), "native", LibraryFileName);
        yield return Path.Combine(baseDir, LibraryFileName);
    }

    private static (Api?, string?) Load()
    {
        nint handle = 0;
        foreach (var path in CandidatePaths())
            if (File.Exists(path) && NativeLibrary.TryLoad(path, out handle)) break;
        // Last, the system search path (LD_LIBRARY_PATH and the loader cache).
        if (handle == 0 && !NativeLibrary.TryLoad(LibraryFileName, out handle))
            return (null, $"the CUDA backend library {LibraryFileName} was not found or could not be loaded (looked in "
                + $"{string.Join(", ", CandidatePaths())} and the system library path); it is built only where CMake finds nvcc");
        try
        {
            nint F(string name) => NativeLibrary.GetExport(handle, name);
            var api = new Api
            {
                AbiVersion = (delegate* unmanaged<int>)F("odllm_cuda_abi_version"),
                LastError = (delegate* unmanaged<nint>)F("odllm_cuda_last_error"),
                DeviceCount = (delegate* unmanaged<int*, int>)F("odllm_cuda_device_count"),
                DeviceInfo = (delegate* unmanaged<int, byte*, int, int*, int*, long*, int>)F("odllm_cuda_device_info"),
                ModelCreate = (delegate* unmanaged<int, Config*, Matrix*, Matrix*, float*, float*, float*, Layer*, float*, float*, nint*, int>)F("odllm_cuda_model_create"),
                ModelFree = (delegate* unmanaged<nint, void>)F("odllm_cuda_model_free"),
                ModelWeightBytes = (delegate* unmanaged<nint, long>)F("odllm_cuda_model_weight_bytes"),
                SequenceCreate = (delegate* unmanaged<nint, int, int, nint*, int>)F("odllm_cuda_sequence_create"),
                SequenceFree = (delegate* unmanaged<nint, void>)F("odllm_cuda_sequence_free"),
                SequenceForward = (delegate* unmanaged<nint, int*, int, int, int, int, float*, int>)F("odllm_cuda_sequence_forward"),
                SequenceSetOutput = (delegate* unmanaged<nint, float*, long, int>)F("odllm_cuda_sequence_set_output"),
                MeasureBandwidth = (delegate* unmanaged<int, long, double*, int>)F("odllm_cuda_measure_bandwidth"),
            };
            int abi = api.AbiVersion();
            if (abi != AbiVersion)
                return (null, $"the CUDA backend library has ABI version {abi} but this runtime needs {AbiVersion}; rebuild src/Runtime.Native");
            return (api, null);
        }
        catch (EntryPointNotFoundException e)
        {
            return (null, $"the CUDA backend library {LibraryFileName} is incomplete ({e.Message})");
        }
    }
}

/// <summary>Finds a usable CUDA device; the answer is computed once per process.</summary>
public static class CudaDevices
{
    private static readonly Lazy<(CudaDeviceInfo? Device, string? Reason)> s_first = new(Probe);

    /// <summary>Device 0 when the backend library loads and sees a GPU, else null.</summary>
    public static CudaDeviceInfo? First => s_first.Value.Device;

    /// <summary>Why <see cref="First"/> is null ("no CUDA device: …"); null when a device is usable.</summary>
    public static string? UnavailableReason => s_first.Value.Reason;

    private static unsafe (CudaDeviceInfo?, string?) Probe()
    {
        if (!CudaNative.TryGet(out var api, out var reason)) return (null, "no CUDA device: " + reason);
        int count;
        if (api.DeviceCount(&count) != CudaNative.StatusOk)
            return (null, $"no CUDA device: the CUDA runtime reports {api.LastErrorMessage}");
        if (count == 0) return (null, "no CUDA device: the CUDA runtime found no GPU");
        byte* name = stackalloc byte[256];
        int major, minor;
        long memory;
        if (api.DeviceInfo(0, name, 256, &major, &minor, &memory) != CudaNative.StatusOk)
            return (null, $"no CUDA device: reading device 0 failed ({api.LastErrorMessage})");
        return (new CudaDeviceInfo(0, Marshal.PtrToStringUTF8((nint)name) ?? "GPU", major, minor, memory), null);
    }

    /// <summary>Device-to-device copy bandwidth of device 0 in bytes/s (read + written), measured on 1 GiB.</summary>
    public static unsafe double MeasureBandwidth(long bytes = 1L << 30)
    {
        if (First is null || !CudaNative.TryGet(out var api, out _)) throw new CudaException($"The CUDA backend is unavailable: {UnavailableReason}.");
        double result;
        api.Check(api.MeasureBandwidth(0, bytes, &result), "measuring the device bandwidth");
        return result;
    }
}

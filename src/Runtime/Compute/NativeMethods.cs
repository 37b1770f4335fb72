using System.Reflection;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace OnDeviceLlm.Runtime.Compute;

/// <summary>
/// LibraryImport declarations for src/Runtime.Native/include/odllm.h, and the resolver that finds
/// the library in the runtimes/&lt;rid&gt;/native layout the build produces.
/// </summary>
internal static partial class NativeMethods
{
    internal const string LibraryName = "odllm";

    /// <summary>ODLLM_ABI_VERSION of the header these declarations mirror.</summary>
    internal const int AbiVersion = 3;

    internal const int StatusOk = 0;

    // The explicit static constructor runs before the first P/Invoke in this class binds, so the
    // resolver is always in place. It is this assembly's only resolver: the runtime allows one.
    static NativeMethods() => NativeLibrary.SetDllImportResolver(typeof(NativeMethods).Assembly, Resolve);

    [StructLayout(LayoutKind.Sequential)]
    internal struct ContextParams
    {
        public int NThreads;
        public int Isa;
    }

    [LibraryImport(LibraryName)]
    internal static partial int odllm_abi_version();

    // const char* owned by the library: returned as a pointer so no marshaller frees it.
    [LibraryImport(LibraryName)]
    internal static partial nint odllm_status_string(int status);

    [LibraryImport(LibraryName)]
    internal static partial ContextParams odllm_context_default_params();

    [LibraryImport(LibraryName)]
    internal static partial int odllm_context_create(in ContextParams parameters, out ContextHandle context);

    [LibraryImport(LibraryName)]
    internal static partial void odllm_context_free(nint context);

    [LibraryImport(LibraryName)]
    internal static partial nint odllm_context_backend(ContextHandle context);

    [LibraryImport(LibraryName)]
    internal static partial int odllm_context_n_threads(ContextHandle context);

    [LibraryImport(LibraryName)]
    internal static partial int odllm_matmul_supports_type(int type);

    [LibraryImport(LibraryName)]
    internal static unsafe partial int odllm_matmul(ContextHandle context, float* x, long m, long k, nint w, int wType, long n, float* y);

    internal static string StatusString(int status) => Marshal.PtrToStringUTF8(odllm_status_string(status)) ?? $"status {status}";

    internal static string LibraryFileName =>
        OperatingSystem.IsWindows() ? "odllm.dll" : OperatingSystem.IsMacOS() ? "libodllm.dylib" : "libodllm.so";

    /// <summary>Where the resolver looks, in order, before the runtime's default probing.</summary>
    internal static IEnumerable<string> CandidatePaths()
    {
        var directories = new List<string>();
        foreach (var dir in new[] { AppContext.BaseDirectory, Path.GetDirectoryName(typeof(NativeMethods).Assembly.Location) })
            if (!string.IsNullOrEmpty(dir) && !directories.Contains(dir)) directories.Add(dir);

        var rids = new List<string> { HostRid() };
        if (!rids.Contains(RuntimeInformation.RuntimeIdentifier)) rids.Add(RuntimeInformation.RuntimeIdentifier);

        foreach (var dir in directories)
        {
            foreach (var rid in rids) yield return Path.Combine(dir, "runtimes", rid, "native", LibraryFileName);
            yield return Path.Combine(dir, LibraryFileName);
        }
    }

    /// <summary>The portable RID the build names its output folder after (linux-x64, osx-arm64, …).</summary>
    internal static string HostRid()
    {
        string os = OperatingSystem.IsWindows() ? "win" : OperatingSystem.IsMacOS() ? "osx" : "linux";
        string arch = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => "x64",
            Architecture.Arm64 => "arm64",
            Architecture.X86 => "x86",
            Architecture.Arm => "arm",
            var other => other.ToString().ToLowerInvariant(),
        };
        return $"{os}-{arch}";
    }

    private static nint Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (libraryName != LibraryName) return 0;
        foreach (var path in CandidatePaths())
            if (File.Exists(path) && NativeLibrary.TryLoad(path, out var handle)) return handle;
        return 0; // fall through to deps.json native assets and the system search path
    }
}

/// <summary>Owns an odllm_context; the SafeHandle reference count keeps it alive during a call racing Dispose.</summary>
internal sealed class ContextHandle : SafeHandleZeroOrMinusOneIsInvalid
{
    public ContextHandle() : base(ownsHandle: true) { }

    protected override bool ReleaseHandle()
    {
        NativeMethods.odllm_context_free(handle);
        return true;
    }
}

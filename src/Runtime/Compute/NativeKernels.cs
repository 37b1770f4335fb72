using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Compute;

/// <summary>Instruction-set levels of the native library (odllm_isa); tests pin one to compare against the scalar reference.</summary>
public enum NativeIsa
{
    /// <summary>The best level the CPU supports.</summary>
    Best = 0,
    /// <summary>The portable C reference kernels.</summary>
    Scalar = 1,
    /// <summary>x86-64 AVX2 + FMA + F16C.</summary>
    Avx2 = 2,
    /// <summary>AArch64 Advanced SIMD.</summary>
    Neon = 3,
    /// <summary>AArch64 Advanced SIMD with the dotprod extension (sdot).</summary>
    NeonDotprod = 4,
    /// <summary>x86-64 AVX2 + FMA + F16C with AVX-VNNI (vpdpbusd).</summary>
    Avx2Vnni = 5,
    /// <summary>x86-64 AVX2 + FMA + F16C with AVX-512 F/BW/VL and AVX512-VNNI (vpdpbusd on 512-bit registers).</summary>
    Avx512Vnni = 6,
    /// <summary>AArch64 Advanced SIMD with dotprod and I8MM (smmla for prefill).</summary>
    NeonI8mm = 7,
}

/// <summary>A native kernel call failed; <see cref="Status"/> is the odllm_status code.</summary>
public sealed class NativeKernelException : OnDeviceLlmException
{
    public NativeKernelException(int status, string message) : base(message) { Status = status; }
    public int Status { get; }
}

/// <summary>
/// Kernels of the bundled C library (libodllm) through LibraryImport. Owns a native context with a
/// persistent thread pool: dispose it when done. Calls on one instance are serialized by the
/// library. Weight types the library does not implement yet run on <see cref="ManagedKernels"/>.
/// </summary>
public sealed partial class NativeKernels : IKernels, IDisposable
{
    private readonly ContextHandle _context;
    private readonly bool[] _nativeTypes;

    private NativeKernels(ContextHandle context)
    {
        _context = context;
        Backend = Marshal.PtrToStringUTF8(NativeMethods.odllm_context_backend(context)) ?? "";
        Threads = NativeMethods.odllm_context_n_threads(context);
        Name = "native-" + Backend;
        var types = Enum.GetValues<TensorType>();
        _nativeTypes = new bool[types.Max(t => (int)t) + 1];
        foreach (var type in types) _nativeTypes[(int)type] = NativeMethods.odllm_matmul_supports_type((int)type) != 0;
    }

    public string Name { get; }

    /// <summary>The kernel set the library chose: "avx512-vnni", "avx2-vnni", "avx2", "neon-i8mm", "neon-dotprod", "neon" or "scalar".</summary>
    public string Backend { get; }

    /// <summary>Threads per operator, the calling thread included.</summary>
    public int Threads { get; }

    /// <summary>Loads the library and creates a context; <paramref name="threads"/> 0 means one per physical core.</summary>
    public static bool TryCreate(int threads, [NotNullWhen(true)] out NativeKernels? kernels, [NotNullWhen(false)] out string? failureReason)
        => TryCreate(threads, NativeIsa.Best, out kernels, out failureReason);

    /// <summary>As <see cref="TryCreate(int, out NativeKernels?, out string?)"/>, pinned to one instruction-set level.</summary>
    public static bool TryCreate(int threads, NativeIsa isa, [NotNullWhen(true)] out NativeKernels? kernels, [NotNullWhen(false)] out string? failureReason)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        kernels = null;
        try
        {
            int abi = NativeMethods.odllm_abi_version();
            if (abi != NativeMethods.AbiVersion)
            {
                failureReason = $"The native kernel library has ABI version {abi} but this runtime needs {NativeMethods.AbiVersion}; rebuild src/Runtime.Native.";
                return false;
            }
            var parameters = NativeMethods.odllm_context_default_params();
            parameters.NThreads = threads;
            parameters.Isa = (int)isa;
            int status = NativeMethods.odllm_context_create(in parameters, out var handle);
            if (status != NativeMethods.StatusOk)
            {
                handle.Dispose();
                failureReason = $"The native kernel library could not create a context ({isa}, {threads} threads): {NativeMethods.StatusString(status)}";
                return false;
            }
            kernels = new NativeKernels(handle);
            failureReason = null;
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            failureReason = $"The native kernel library {NativeMethods.LibraryFileName} could not be loaded ({e.Message}); "
                + $"looked first in: {string.Join(", ", NativeMethods.CandidatePaths())}.";
            return false;
        }
    }

    public unsafe void MatMul(ReadOnlySpan<float> x, int m, ModelTensor w, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        int n = w.Rows, k = w.Cols;
        if (x.Length < (long)m * k)
            throw new ArgumentException($"x holds {x.Length} floats but {m}×{k} are needed for tensor '{w.Name}'.", nameof(x));
        if (y.Length < (long)m * n)
            throw new ArgumentException($"y holds {y.Length} floats but {m}×{n} are needed for tensor '{w.Name}'.", nameof(y));

        // The C integer kernels take whole blocks of 32; an int8 matrix with other row lengths (which conversion
        // never writes, but a hand-made file may hold) runs on the managed kernels.
        if ((uint)w.Type >= (uint)_nativeTypes.Length || !_nativeTypes[(int)w.Type] || (w.Type == TensorType.Int8 && k % 32 != 0))
        {
            ManagedKernels.Instance.MatMul(x, m, w, y);
            return;
        }
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            y[..(m * n)].Clear();
            return;
        }
        long needed = TensorTypes.ByteLength(w.Type, [n, k]);
        if (w.Data == 0 || w.ByteLength < needed)
            throw new ArgumentException($"Tensor '{w.Name}' holds {w.ByteLength} bytes at 0x{w.Data:x} but a {n}×{k} {w.Type} matrix needs {needed}.", nameof(w));

        long started = StartTiming();
        int status;
        fixed (float* px = x)
        fixed (float* py = y)
            status = NativeMethods.odllm_matmul(_context, px, m, k, w.Data, (int)w.Type, n, py);
        if (started != 0) Interlocked.Add(ref _nativeTicks, Stopwatch.GetTimestamp() - started);
        if (status != NativeMethods.StatusOk)
            throw new NativeKernelException(status,
                $"The native matmul failed for tensor '{w.Name}' ({w.Type} [{n}, {k}], {m} input rows): {NativeMethods.StatusString(status)}");
    }

    public void Dispose() => _context.Dispose();

    public override string ToString() => $"{Name} ({Threads} threads)";
}

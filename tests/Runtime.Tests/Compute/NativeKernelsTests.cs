using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Model;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Compute;

/// <summary>Weights in unmanaged memory, as a memory-mapped model file would hold them.</summary>
internal sealed unsafe class UnmanagedTensor : IDisposable
{
    private readonly void* _memory;

    public UnmanagedTensor(string name, TensorType type, int rows, int cols, ReadOnlySpan<byte> bytes, long? claimedByteLength = null)
    {
        _memory = NativeMemory.AlignedAlloc((nuint)Math.Max(1, bytes.Length), 64);
        bytes.CopyTo(new Span<byte>(_memory, bytes.Length));
        Tensor = new ModelTensor(name, type, [rows, cols], (nint)_memory, claimedByteLength ?? bytes.Length);
    }

    public ModelTensor Tensor { get; }

    public void Dispose() => NativeMemory.AlignedFree(_memory);

    /// <summary>Random weights of the given type; values near ±1 so f16/bf16 rounding stays benign.</summary>
    public static UnmanagedTensor Random(TensorType type, int rows, int cols, Random rng)
    {
        int count = rows * cols;
        byte[] bytes;
        switch (type)
        {
            case TensorType.F32:
                bytes = new byte[count * 4];
                for (int i = 0; i < count; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), NextFloat(rng));
                break;
            case TensorType.F16:
                bytes = new byte[count * 2];
                for (int i = 0; i < count; i++) BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(i * 2), (Half)NextFloat(rng));
                break;
            case TensorType.BF16:
                bytes = new byte[count * 2];
                for (int i = 0; i < count; i++)
                    BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i * 2), (ushort)(BitConverter.SingleToUInt32Bits(NextFloat(rng)) >> 16));
                break;
            case TensorType.Q8_0:
            case TensorType.Q4_0:
            {
                int size = type == TensorType.Q8_0 ? 34 : 18;
                bytes = new byte[count / 32 * size];
                rng.NextBytes(bytes);
                for (int b = 0; b < count / 32; b++)
                    BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(b * size), (Half)((rng.Next(2) * 2 - 1) * (0.01f + rng.NextSingle() * 0.02f)));
                break;
            }
            case TensorType.Int8:
                bytes = new byte[count + rows * 4];
                rng.NextBytes(bytes.AsSpan(0, count));
                for (int r = 0; r < rows; r++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(count + r * 4), 0.001f + rng.NextSingle() * 0.01f);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, "No random generator for this type.");
        }
        return new UnmanagedTensor($"test.{type}.{rows}x{cols}", type, rows, cols, bytes);
    }

    public static float NextFloat(Random rng) => rng.NextSingle() * 2 - 1;
}

public sealed class NativeKernelsTests
{
    public static TheoryData<TensorType, int, int, int> Shapes()
    {
        var data = new TheoryData<TensorType, int, int, int>();
        int[][] shapes = [[1, 1, 1], [1, 17, 5], [1, 1000, 301], [2, 8, 4], [3, 64, 33], [5, 100, 7], [16, 257, 40], [7, 130, 70]];
        foreach (var type in new[] { TensorType.F32, TensorType.F16, TensorType.BF16 })
            foreach (var s in shapes) data.Add(type, s[0], s[1], s[2]);
        // The integer types take rows of whole 32-value blocks.
        int[][] blockShapes = [[1, 32, 1], [1, 64, 5], [1, 1024, 301], [2, 32, 4], [3, 96, 33], [16, 256, 40], [7, 128, 70]];
        foreach (var type in new[] { TensorType.Int8, TensorType.Q8_0, TensorType.Q4_0 })
            foreach (var s in blockShapes) data.Add(type, s[0], s[1], s[2]);
        return data;
    }

    /// <summary>The CPU's feature words from /proc/cpuinfo ("Features" on AArch64): .NET has no I8MM query.</summary>
    private static string[] LinuxCpuFeatures() => File.Exists("/proc/cpuinfo")
        ? File.ReadLines("/proc/cpuinfo").Where(l => l.StartsWith("Features", StringComparison.Ordinal))
            .SelectMany(l => l[(l.IndexOf(':') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToArray()
        : [];

    [Fact]
    public void DefaultKernelsAreTheNativeLibrary()
    {
        // Proves the build placed libodllm in runtimes/<rid>/native of this test's output.
        Assert.True(Kernels.Default is NativeKernels, $"Kernels.Default is {Kernels.Default.Name}: {Kernels.FallbackReason}");
        Assert.Null(Kernels.FallbackReason);
        var native = (NativeKernels)Kernels.Default;
        Assert.Equal("native-" + native.Backend, native.Name);
        Assert.True(native.Threads >= 1);
        string expected = Avx2.IsSupported && Fma.IsSupported
            ? (HasAvx512Vnni() ? "avx512-vnni" : AvxVnni.IsSupported ? "avx2-vnni" : "avx2")
            : Dp.IsSupported ? (LinuxCpuFeatures().Contains("i8mm") ? "neon-i8mm" : "neon-dotprod") : AdvSimd.Arm64.IsSupported ? "neon" : "scalar";
        Assert.Equal(expected, native.Backend);
        Assert.True(File.Exists(Path.Combine(AppContext.BaseDirectory, "runtimes", NativeMethods.HostRid(), "native", NativeMethods.LibraryFileName)),
            "the library is not in the runtimes/<rid>/native layout of the test output");
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatMulMatchesManagedKernels(TensorType type, int m, int k, int n)
    {
        var rng = new Random(m * 1_000_003 + k * 1009 + n * 31 + (int)type);
        using var w = UnmanagedTensor.Random(type, n, k, rng);
        var x = new float[m * k];
        for (int i = 0; i < x.Length; i++) x[i] = UnmanagedTensor.NextFloat(rng);

        var expected = new float[m * n];
        ManagedKernels.Instance.MatMul(x, m, w.Tensor, expected);
        using var native = CreateNative(threads: 2, NativeIsa.Best);
        var actual = new float[m * n];
        native.MatMul(x, m, w.Tensor, actual);

        AssertClose(expected, actual, x, m, k, w.Tensor);
    }

    [Theory]
    [InlineData(TensorType.F32)]
    [InlineData(TensorType.F16)]
    [InlineData(TensorType.BF16)]
    [InlineData(TensorType.Int8)]
    [InlineData(TensorType.Q8_0)]
    [InlineData(TensorType.Q4_0)]
    public void SimdMatchesScalarReference(TensorType type)
    {
        using var simd = CreateNative(threads: 3, NativeIsa.Best);
        using var scalar = CreateNative(threads: 1, NativeIsa.Scalar);
        Assert.Equal("scalar", scalar.Backend);
        if (Avx2.IsSupported && Fma.IsSupported) Assert.Contains(simd.Backend, new[] { "avx2", "avx2-vnni", "avx512-vnni" });

        var rng = new Random(7 + (int)type);
        var shapes = type is TensorType.Int8 or TensorType.Q8_0 or TensorType.Q4_0
            ? new[] { (1, 992, 67), (4, 32, 129), (9, 512, 19) }
            : new[] { (1, 999, 67), (4, 33, 129), (9, 512, 19) };
        foreach (var (m, k, n) in shapes)
        {
            using var w = UnmanagedTensor.Random(type, n, k, rng);
            var x = new float[m * k];
            for (int i = 0; i < x.Length; i++) x[i] = UnmanagedTensor.NextFloat(rng);
            var a = new float[m * n];
            var b = new float[m * n];
            simd.MatMul(x, m, w.Tensor, a);
            scalar.MatMul(x, m, w.Tensor, b);
            AssertClose(b, a, x, m, k, w.Tensor);
        }
    }

    [Fact]
    public void Int8RowsOfPartialBlocksRunOnTheManagedKernels()
    {
        // The C integer kernels take whole blocks of 32; such a matrix must still multiply, bit for bit as managed.
        var rng = new Random(3);
        using var w = UnmanagedTensor.Random(TensorType.Int8, 6, 40, rng);
        var x = new float[2 * 40];
        for (int i = 0; i < x.Length; i++) x[i] = UnmanagedTensor.NextFloat(rng);
        var expected = new float[12];
        var actual = new float[12];
        ManagedKernels.Instance.MatMul(x, 2, w.Tensor, expected);
        using var native = CreateNative(threads: 1, NativeIsa.Best);
        native.MatMul(x, 2, w.Tensor, actual);
        Assert.Equal(expected, actual);
        Assert.NotEqual(new float[12], actual);
    }

    [Fact]
    public void BadArgumentsThrowInsteadOfCrashing()
    {
        using var native = CreateNative(threads: 2, NativeIsa.Best);
        using var w = UnmanagedTensor.Random(TensorType.F32, 4, 8, new Random(1));
        var x = new float[3 * 8];
        var y = new float[3 * 4];

        var shortX = Assert.Throws<ArgumentException>(() => native.MatMul(x.AsSpan(0, 23), 3, w.Tensor, y));
        Assert.Equal("x", shortX.ParamName);
        Assert.Contains(w.Tensor.Name, shortX.Message);
        var shortY = Assert.Throws<ArgumentException>(() => native.MatMul(x, 3, w.Tensor, y.AsSpan(0, 11)));
        Assert.Equal("y", shortY.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => native.MatMul(x, -1, w.Tensor, y));
        Assert.Throws<ArgumentNullException>(() => native.MatMul(x, 1, null!, y));

        // A tensor whose table entry claims fewer bytes than its shape needs must not be read past its end.
        using var truncated = new UnmanagedTensor("truncated", TensorType.F16, 4, 8, new byte[4 * 8 * 2], claimedByteLength: 63);
        var tooSmall = Assert.Throws<ArgumentException>(() => native.MatMul(x, 1, truncated.Tensor, y));
        Assert.Contains("truncated", tooSmall.Message);

        native.Dispose();
        Assert.Throws<ObjectDisposedException>(() => native.MatMul(x, 1, w.Tensor, y));
    }

    [Fact]
    public void UnavailableInstructionSetGivesAReason()
    {
        var foreign = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? NativeIsa.Avx2 : NativeIsa.Neon;
        Assert.False(NativeKernels.TryCreate(1, foreign, out var kernels, out var reason));
        Assert.Null(kernels);
        Assert.Contains("instruction set is not available", reason);
    }

    [Fact]
    public void CreateHonoursTheRequestedBackend()
    {
        Assert.Same(ManagedKernels.Instance, Kernels.Create(KernelBackend.Managed));
        var native = Assert.IsType<NativeKernels>(Kernels.Create(KernelBackend.Native, threads: 3));
        using (native) Assert.Equal(3, native.Threads);
        var auto = Assert.IsType<NativeKernels>(Kernels.Create(KernelBackend.Auto, threads: 1));
        using (auto) Assert.Equal(1, auto.Threads);
        Assert.Throws<ArgumentOutOfRangeException>(() => Kernels.Create(KernelBackend.Native, threads: -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Kernels.Create((KernelBackend)42));
    }

    /// <summary>AVX-512 F/BW/VL (the runtime's checks include the OS saving ZMM state) with AVX512-VNNI: cpuid leaf 7, ECX bit 11.</summary>
    private static bool HasAvx512Vnni()
        => Avx512BW.IsSupported && Avx512F.VL.IsSupported && (X86Base.CpuId(7, 0).Ecx & (1 << 11)) != 0;

    private static NativeKernels CreateNative(int threads, NativeIsa isa)
    {
        Assert.True(NativeKernels.TryCreate(threads, isa, out var kernels, out var reason), reason);
        return kernels;
    }

    /// <summary>
    /// Within 1e-4 relative to Σ|x·w| of each output: the scale summation error grows with, and
    /// well below a typical term of these sums (Σ|x·w| / k), so a missing or wrong term fails.
    /// </summary>
    private static void AssertClose(float[] expected, float[] actual, float[] x, int m, int k, ModelTensor w)
    {
        int n = w.Rows;
        var row = new float[k];
        for (int j = 0; j < n; j++)
        {
            w.ReadRow(j, row);
            for (int i = 0; i < m; i++)
            {
                double scale = 0;
                for (int t = 0; t < k; t++) scale += Math.Abs((double)x[i * k + t] * row[t]);
                double diff = Math.Abs((double)expected[i * n + j] - actual[i * n + j]);
                Assert.True(diff <= 1e-4 * scale + 1e-30,
                    $"{w}: y[{i},{j}] = {actual[i * n + j]} but {expected[i * n + j]} expected (|diff| {diff:g3}, Σ|x·w| {scale:g3})");
            }
        }
    }
}

using System.Diagnostics;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Compute;

/// <summary>The element-wise and row-wise operators through the library, and the optional timing of every native call.</summary>
public sealed partial class NativeKernels
{
    private long _nativeTicks;

    /// <summary>
    /// When set, the <see cref="Stopwatch"/> ticks spent inside native calls add up in <see cref="NativeTicks"/>
    /// (two timestamps, about 20-40 ns, per call), so that a benchmark can tell the managed share of a forward pass.
    /// </summary>
    public bool MeasureNativeTime { get; set; }

    /// <summary>Stopwatch ticks spent inside native calls while <see cref="MeasureNativeTime"/> was set; writable to restart the count.</summary>
    public long NativeTicks
    {
        get => Interlocked.Read(ref _nativeTicks);
        set => Interlocked.Exchange(ref _nativeTicks, value);
    }

    private long StartTiming() => MeasureNativeTime ? Stopwatch.GetTimestamp() : 0;

    private void Check(int status, long started, string operation)
    {
        if (started != 0) Interlocked.Add(ref _nativeTicks, Stopwatch.GetTimestamp() - started);
        if (status != NativeMethods.StatusOk)
            throw new NativeKernelException(status, $"The native {operation} failed: {NativeMethods.StatusString(status)}");
    }

    public unsafe void RmsNorm(ReadOnlySpan<float> x, int rows, int dim, ReadOnlySpan<float> weight, float weightOffset, float eps, Span<float> y)
    {
        OpArguments.Rows(x.Length, rows, dim, weight.Length, 0, y.Length);
        if (rows == 0) return;
        long started = StartTiming();
        int status;
        fixed (float* px = x)
        fixed (float* pw = weight)
        fixed (float* py = y)
            status = NativeMethods.odllm_rms_norm(_context, px, rows, dim, pw, weight.Length / dim, weightOffset, eps, py);
        Check(status, started, "RMSNorm");
    }

    public unsafe void LayerNorm(ReadOnlySpan<float> x, int rows, int dim, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps, Span<float> y)
    {
        OpArguments.Rows(x.Length, rows, dim, weight.Length, bias.Length, y.Length);
        if (rows == 0) return;
        long started = StartTiming();
        int status;
        // An empty span pins as a null pointer: the library's "no bias".
        fixed (float* px = x)
        fixed (float* pw = weight)
        fixed (float* pb = bias)
        fixed (float* py = y)
            status = NativeMethods.odllm_layer_norm(_context, px, rows, dim, pw, pb, weight.Length / dim, eps, py);
        Check(status, started, "LayerNorm");
    }

    public unsafe void RopeTables(int pos0, int rows, ReadOnlySpan<float> invFreq, Span<float> cos, Span<float> sin)
    {
        OpArguments.RopeTables(pos0, rows, invFreq.Length, cos.Length, sin.Length);
        if (rows == 0 || invFreq.IsEmpty) return;
        long started = StartTiming();
        int status;
        fixed (float* pf = invFreq)
        fixed (float* pc = cos)
        fixed (float* ps = sin)
            status = NativeMethods.odllm_rope_tables(pos0, rows, pf, invFreq.Length, pc, ps);
        Check(status, started, "RoPE table");
    }

    public unsafe void Rope(Span<float> x, int rows, int heads, int headDim, int rotaryDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        OpArguments.Rope(x.Length, rows, heads, headDim, rotaryDim, cos.Length, sin.Length);
        if (rows == 0) return;
        long started = StartTiming();
        int status;
        fixed (float* px = x)
        fixed (float* pc = cos)
        fixed (float* ps = sin)
            status = NativeMethods.odllm_rope(_context, px, rows, heads, headDim, rotaryDim, pc, ps);
        Check(status, started, "RoPE");
    }

    public unsafe void Activate(Activation activation, ReadOnlySpan<float> x, Span<float> y)
    {
        OpArguments.Activation(activation);
        OpArguments.Elementwise(x.Length, x.Length, y.Length);
        if (x.IsEmpty) return;
        long started = StartTiming();
        int status;
        fixed (float* px = x)
        fixed (float* py = y)
            status = NativeMethods.odllm_activate(_context, (int)activation, px, x.Length, py);
        Check(status, started, "activation");
    }

    public unsafe void GatedActivate(Activation activation, ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> y)
    {
        OpArguments.Activation(activation);
        OpArguments.Elementwise(gate.Length, up.Length, y.Length);
        if (gate.IsEmpty) return;
        long started = StartTiming();
        int status;
        fixed (float* pg = gate)
        fixed (float* pu = up)
        fixed (float* py = y)
            status = NativeMethods.odllm_gated_activate(_context, (int)activation, pg, pu, gate.Length, py);
        Check(status, started, "gated activation");
    }

    public unsafe void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y)
    {
        OpArguments.Elementwise(a.Length, b.Length, y.Length);
        if (a.IsEmpty) return;
        long started = StartTiming();
        int status;
        fixed (float* pa = a)
        fixed (float* pb = b)
        fixed (float* py = y)
            status = NativeMethods.odllm_add(_context, pa, pb, a.Length, py);
        Check(status, started, "add");
    }

    public unsafe void Softcap(ReadOnlySpan<float> x, float cap, Span<float> y)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cap);
        OpArguments.Elementwise(x.Length, x.Length, y.Length);
        if (x.IsEmpty) return;
        long started = StartTiming();
        int status;
        fixed (float* px = x)
        fixed (float* py = y)
            status = NativeMethods.odllm_softcap(_context, px, x.Length, cap, py);
        Check(status, started, "soft-capping");
    }
}

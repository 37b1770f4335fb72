namespace OnDeviceLlm.Runtime.Compute;

public sealed partial class NativeKernels
{
    public unsafe void Attention(in AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, Span<float> output)
    {
        int positions = shape.Validate(q.Length, keys.Length, values.Length, output.Length);
        fixed (float* pk = keys)
        fixed (float* pv = values)
            Attend(shape, positions, NativeMethods.TypeF32, q, pk, pv, output);
    }

    public unsafe void Attention(in AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<Half> keys, ReadOnlySpan<Half> values, Span<float> output)
    {
        int positions = shape.Validate(q.Length, keys.Length, values.Length, output.Length);
        fixed (Half* pk = keys)
        fixed (Half* pv = values)
            Attend(shape, positions, NativeMethods.TypeF16, q, pk, pv, output);
    }

    private unsafe void Attend(in AttentionShape shape, int positions, int kvType, ReadOnlySpan<float> q, void* k, void* v, Span<float> output)
    {
        int status;
        long started = StartTiming();
        fixed (float* pq = q)
        fixed (float* po = output)
        fixed (float* slopes = shape.AlibiSlopes)
        {
            var parameters = new NativeMethods.AttentionParams
            {
                AlibiSlopes = slopes,
                NQueries = shape.Queries,
                Pos0 = shape.Position0,
                KvPositions = positions,
                NHeads = shape.Heads,
                NKvHeads = shape.KvHeads,
                HeadDim = shape.HeadDim,
                KvType = kvType,
                Window = shape.Window,
                Scale = shape.Scale,
                Softcap = shape.Softcap,
            };
            status = NativeMethods.odllm_attention(_context, parameters, pq, k, v, po);
        }
        if (status != NativeMethods.StatusOk)
            throw new NativeKernelException(status,
                $"The native attention failed ({shape.Queries} queries at {shape.Position0}, {shape.Heads}/{shape.KvHeads} heads of {shape.HeadDim}): {NativeMethods.StatusString(status)}");
        Check(status, started, "attention");
    }
}

using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace OnDeviceLlm.Runtime.Compute;

public sealed partial class ManagedKernels
{
    public void Attention(in AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, Span<float> output)
    {
        shape.Validate(q.Length, keys.Length, values.Length, output.Length);
        Attend(shape, q, keys, values, output);
    }

    public void Attention(in AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<Half> keys, ReadOnlySpan<Half> values, Span<float> output)
    {
        shape.Validate(q.Length, keys.Length, values.Length, output.Length);
        Attend(shape, q, keys, values, output);
    }

    /// <summary>One (query row, head) at a time; f16 rows are widened into a pooled buffer just before use.</summary>
    private static void Attend<T>(in AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<T> keys, ReadOnlySpan<T> values, Span<float> output)
        where T : unmanaged
    {
        int d = shape.HeadDim, heads = shape.Heads, kvDim = shape.KvHeads * d, group = heads / shape.KvHeads;
        float scale = shape.Scale, cap = shape.Softcap;
        float[] scoreBuffer = ArrayPool<float>.Shared.Rent(shape.Position0 + shape.Queries);
        float[] rowBuffer = ArrayPool<float>.Shared.Rent(d);
        try
        {
            var row = rowBuffer.AsSpan(0, d);
            for (int t = 0; t < shape.Queries; t++)
            {
                int pos = shape.Position0 + t;
                // Key j is visible from query pos when pos − window < j ≤ pos.
                int firstKey = shape.Window > 0 ? Math.Max(0, pos - shape.Window + 1) : 0;
                int count = pos - firstKey + 1;
                var scores = scoreBuffer.AsSpan(0, count);
                for (int hd = 0; hd < heads; hd++)
                {
                    var qh = q.Slice((t * heads + hd) * d, d);
                    int g = hd / group;
                    float slope = shape.AlibiSlopes?[hd] ?? 0f;
                    for (int j = 0; j < count; j++)
                    {
                        int key = firstKey + j;
                        float dot = TensorPrimitives.Dot(qh, Row(keys, key * kvDim + g * d, d, row));
                        // ALiBi is added to the raw q·k, before scaling (transformers' Falcon).
                        float score = (dot + slope * key) * scale;
                        scores[j] = cap > 0 ? cap * MathF.Tanh(score / cap) : score;
                    }
                    // TensorPrimitives.SoftMax does not subtract the maximum: a score above ~88 overflows exp to
                    // infinity and the row becomes NaN (stories260K does this on ordinary prompts), so shift first.
                    TensorPrimitives.Subtract(scores, TensorPrimitives.Max(scores), scores);
                    TensorPrimitives.SoftMax(scores, scores);
                    var oh = output.Slice((t * heads + hd) * d, d);
                    oh.Clear();
                    for (int j = 0; j < count; j++)
                        TensorPrimitives.MultiplyAdd(Row(values, (firstKey + j) * kvDim + g * d, d, row), scores[j], oh, oh);
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scoreBuffer);
            ArrayPool<float>.Shared.Return(rowBuffer);
        }
    }

    /// <summary>d cache values from <paramref name="offset"/> as f32: the f32 cache itself, or f16 widened into <paramref name="buffer"/>.</summary>
    private static ReadOnlySpan<float> Row<T>(ReadOnlySpan<T> cache, int offset, int d, Span<float> buffer) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return MemoryMarshal.Cast<T, float>(cache.Slice(offset, d));
        TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<T, Half>(cache.Slice(offset, d)), buffer);
        return buffer;
    }
}

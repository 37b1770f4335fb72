using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Quantization;
using OnDeviceLlm.Runtime.Tests.Compute;

namespace OnDeviceLlm.Runtime.Tests.Quantization;

/// <summary>f32 rows encoded by <see cref="TensorEncoder"/> into unmanaged memory, as a model file would map them.</summary>
internal static class EncodedTensor
{
    public static UnmanagedTensor Create(TensorType type, int rows, int cols, ReadOnlySpan<float> values)
    {
        var stream = new MemoryStream();
        using (var encoder = new TensorEncoder(type, rows, cols, stream))
        {
            encoder.Write(values);
            encoder.Complete();
        }
        return new UnmanagedTensor($"test.{type}.{rows}x{cols}", type, rows, cols, stream.ToArray());
    }
}

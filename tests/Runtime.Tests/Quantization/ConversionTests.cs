using OnDeviceLlm.Runtime.Conversion;
using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Quantization;
using OnDeviceLlm.Runtime.Tests.Fixtures;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Quantization;

/// <summary>
/// Every fixture converted to each integer scheme decodes back to its f32 conversion within the quantization step of
/// each block (or row, for int8): proves the streaming converter, fused tensors split into pieces included, puts
/// every value and scale where the layout says.
/// </summary>
public class ConversionTests
{
    public static IEnumerable<object[]> Cases()
    {
        foreach (var fixture in FixtureReference.Names())
            foreach (var scheme in new[] { "int8", "q8", "q4", "mixed" })
                yield return [fixture, scheme];
    }

    [Theory, MemberData(nameof(Cases))]
    public void QuantizedTensors_DecodeToTheF32ConversionWithinOneStep(string fixture, string schemeName)
    {
        var r = FixtureReference.Load(fixture);
        var scheme = QuantizationScheme.Parse(schemeName);
        string f32Path = Path.Combine(Path.GetTempPath(), $"conv-{fixture}-f32-{Guid.NewGuid():N}.odlm");
        string qPath = Path.Combine(Path.GetTempPath(), $"conv-{fixture}-{schemeName}-{Guid.NewGuid():N}.odlm");
        try
        {
            ModelConverter.Convert(r.Folder, f32Path, QuantizationScheme.F32);
            Assert.Empty(ModelConverter.Convert(r.Folder, qPath, scheme));
            using var f32 = ModelFile.Open(f32Path);
            using var quantized = ModelFile.Open(qPath);
            Assert.Equal(f32.Tensors.Select(t => t.Name), quantized.Tensors.Select(t => t.Name));
            foreach (var q in quantized.Tensors)
            {
                var reference = f32.Find(q.Name)!;
                Assert.Equal(scheme.TargetFor(q.Name, q.Shape, TensorType.F32), q.Type);
                var original = reference.ToFloat32();
                var decoded = q.ToFloat32();
                int block = q.Type == TensorType.Int8 ? q.Cols : q.Type is TensorType.Q8_0 or TensorType.Q4_0 ? 32 : 0;
                if (block == 0)
                {
                    Assert.Equal(original, decoded); // vectors stay f32
                    continue;
                }
                for (int start = 0; start < original.Length; start += block)
                {
                    float amax = 0;
                    for (int t = start; t < start + block; t++) amax = Math.Max(amax, Math.Abs(original[t]));
                    // Half a step of rounding (a whole one at Q4_0's clamped end), plus, for the f16 block scales,
                    // up to |q| · 2^-11 of a step (|q| <= 127 for Q8_0, 8 for Q4_0); int8's f32 scale is exact.
                    float step = q.Type == TensorType.Q4_0 ? amax / 8 : amax / 127;
                    float steps = q.Type switch { TensorType.Q4_0 => 1 + 8f / 2048, TensorType.Q8_0 => 0.5f + 127f / 2048, _ => 0.5f };
                    float allowed = step * steps * 1.0001f + 1e-30f;
                    for (int t = start; t < start + block; t++)
                        Assert.True(Math.Abs(decoded[t] - original[t]) <= allowed,
                            $"{fixture} {schemeName} {q.Name} ({q.Type}) value {t}: {original[t]} decoded to {decoded[t]} (allowed {allowed})");
                }
            }
        }
        finally
        {
            File.Delete(f32Path);
            File.Delete(qPath);
        }
    }
}

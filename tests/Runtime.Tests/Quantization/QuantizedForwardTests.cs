using System.Text.Json;
using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Conversion;
using OnDeviceLlm.Runtime.Inference;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Quantization;
using OnDeviceLlm.Runtime.Tests.Fixtures;
using Xunit;
using Xunit.Abstractions;

namespace OnDeviceLlm.Runtime.Tests.Quantization;

/// <summary>
/// Quantized models end to end. Exactness, on every fixture: the native quantized forward pass equals the managed one,
/// whose integer matmul IntegerKernelsTests checks against a double-precision oracle of dequantized weights times
/// quantized activations. (A double-precision reference for the whole pass cannot work: its activations differ from
/// f32 ones in the last ulp, some land on the other side of a rounding boundary of the next layer's quantization,
/// and logits then differ by up to 0.04 — measured on 6 of 88 fixture/scheme/backend cases. So every backend
/// follows one float contract to the bit instead.) Quality, on the trained stories260K: teacher-forced top-1
/// agreement with f32.
/// </summary>
public class QuantizedForwardTests(ITestOutputHelper output)
{
    private readonly ITestOutputHelper _output = output;

    public static IEnumerable<object[]> FixtureCases()
    {
        foreach (var fixture in FixtureReference.Names())
            foreach (var scheme in new[] { "int8", "q8", "q4", "mixed" })
                yield return [fixture, scheme];
    }

    [Theory, MemberData(nameof(FixtureCases))]
    public void Fixture_NativeEqualsManagedReference(string fixture, string schemeName)
    {
        var r = FixtureReference.Load(fixture);
        var scheme = QuantizationScheme.Parse(schemeName);
        string path = Path.Combine(Path.GetTempPath(), $"quant-{fixture}-{schemeName}-{Guid.NewGuid():N}.odlm");
        try
        {
            ModelConverter.Convert(r.Folder, path, scheme);
            using var native = LanguageModel.Load(path, new LoadOptions { Backend = KernelBackend.Native });
            using var managed = LanguageModel.Load(path, new LoadOptions { Backend = KernelBackend.Managed });
            Assert.Equal(schemeName, native.File.Provenance.Quantization);
            // Every matrix took the scheme's type: the fixtures' rows are whole blocks of 32.
            foreach (var t in native.File.Tensors)
                if (t.Shape.Length == 2 && !t.Name.EndsWith("_norm.weight", StringComparison.Ordinal))
                    Assert.Equal(scheme.TargetFor(t.Name, t.Shape, TensorType.F32), t.Type);
            Assert.Contains(native.File.Tensors, t => t.Type == scheme.MatrixType);

            // Prefill (the m > 1 kernels) over the 40-token sequence, then decode (m = 1) of one more token. The native
            // matmuls run with the managed attention: the backends' attention kernels sum in other orders (they agree to
            // 1e-5, KvCacheTests), and a last-ulp difference flips some activation's quantization (0.04 on llama mixed).
            var ids = r.FullSequenceIds;
            var session = new InferenceSession(new Transformer(native.Config, native.File, new NativeMatMulManagedAttention(native.Kernels)),
                null, native.KvCacheType);
            var reference = managed.CreateSession();
            var expected = reference.Prefill(ids).ToArray();
            FixtureTests.AssertClose(expected, session.Prefill(ids), 1e-3f, $"{fixture} {schemeName} last logits");
            int next = Sampler.ArgMax(expected);
            FixtureTests.AssertClose(reference.Decode(next).ToArray(), session.Decode(next), 1e-3f, $"{fixture} {schemeName} decode");

        }
        finally { File.Delete(path); }
    }

    [Theory, MemberData(nameof(FixtureCases))]
    public void Fixture_PrefillThenDecode_EqualsTokenByTokenDecode(string fixture, string schemeName)
    {
        // The integer kernels compute each output the same way whatever the number of input rows, so a batched
        // prefill and one-token decodes quantize the same activations and agree as closely as the f32 model does.
        var r = FixtureReference.Load(fixture);
        string path = Path.Combine(Path.GetTempPath(), $"quant-pd-{fixture}-{schemeName}-{Guid.NewGuid():N}.odlm");
        try
        {
            ModelConverter.Convert(r.Folder, path, QuantizationScheme.Parse(schemeName));
            using var model = LanguageModel.Load(path, new LoadOptions { Backend = KernelBackend.Native });
            var ids = r.FullSequenceIds;
            int vocab = model.Config.VocabSize;
            var batched = new float[ids.Length * vocab];
            model.CreateSession().Evaluate(ids, batched);
            var single = model.CreateSession();
            for (int i = 0; i < ids.Length; i++)
                FixtureTests.AssertClose(batched.AsSpan(i * vocab, vocab), single.Decode(ids[i]), 1e-4f, $"{fixture} {schemeName} position {i}");
        }
        finally { File.Delete(path); }
    }

    // Measured on stories260K's 199 teacher-forced positions (2026-11-26, x86-64 AVX2; the managed kernels give the
    // same bits): int8 197/199 = 99.0%, q8 197/199 = 99.0%, q4 170/199 = 85.4%, mixed 177/199 = 88.9%
    // (ffn_down, 172 columns, stays f16 in all four). The floors are the issue's: 97% for 8 bits, 80% for 4.
    [Theory]
    [InlineData("int8", 0.97)]
    [InlineData("q8", 0.97)]
    [InlineData("q4", 0.80)]
    [InlineData("mixed", 0.80)]
    public void Stories260K_TeacherForcedTop1AgreesWithF32(string schemeName, double floor)
    {
        string folder = Path.Combine(TestPaths.Models, "stories260K", "hf-derived");
        int[] tokens = ReferenceTokens(200);
        int positions = tokens.Length - 1;

        int[] f32Top;
        using (var f32 = LanguageModel.Load(folder, new LoadOptions { Quantization = QuantizationScheme.F32 }))
            f32Top = Top1(f32, tokens[..positions]);
        // The f32 model is the greedy reference itself: its predictions are the recorded continuation.
        Assert.Equal(tokens[1..], f32Top);

        using var quantized = LanguageModel.Load(folder, new LoadOptions { Quantization = QuantizationScheme.Parse(schemeName) });
        Assert.Contains(quantized.File.Tensors, t => t.Type == QuantizationScheme.Parse(schemeName).MatrixType);
        // ffn_down's rows (172) are not whole blocks of 32: it stays 16-bit, everything else is quantized.
        Assert.Equal(TensorType.F16, quantized.File.Find(TensorNames.Layer(0, TensorNames.FfnDown))!.Type);
        int[] top = Top1(quantized, tokens[..positions]);
        int agree = top.Zip(f32Top).Count(p => p.First == p.Second);
        double agreement = (double)agree / positions;
        _output.WriteLine($"{schemeName}: {agree}/{positions} = {agreement:P1}");
        Assert.True(agreement >= floor, $"{schemeName}: top-1 agreement {agree}/{positions} = {agreement:P1} is below {floor:P0}");
    }

    private static int[] Top1(LanguageModel model, int[] input)
    {
        int vocab = model.Config.VocabSize;
        var logits = new float[input.Length * vocab];
        model.CreateSession().Evaluate(input, logits);
        return Enumerable.Range(0, input.Length).Select(p => Sampler.ArgMax(logits.AsSpan(p * vocab, vocab))).ToArray();
    }

    /// <summary>BOS and the first <paramref name="count"/> − 1 greedy tokens of llama2.c's empty-prompt reference.</summary>
    private static int[] ReferenceTokens(int count)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(TestPaths.Models, "stories260K", "reference-outputs.json")));
        var bosOnly = doc.RootElement.GetProperty("computed_here").GetProperty("cases").EnumerateArray()
            .Single(c => c.GetProperty("prompt").GetString() == "");
        return bosOnly.GetProperty("all_tokens").EnumerateArray().Take(count).Select(e => e.GetInt32()).ToArray();
    }

    /// <summary>The native matmuls with the managed attention, so a whole forward pass can be compared bit for bit.</summary>
    private sealed class NativeMatMulManagedAttention(IKernels native) : IKernels
    {
        public string Name => native.Name;

        public void MatMul(ReadOnlySpan<float> x, int m, ModelTensor w, Span<float> y) => native.MatMul(x, m, w, y);

        // The element-wise operators return the same bits natively and managed (KernelOpsTests), so they stay native.
        public void RmsNorm(ReadOnlySpan<float> x, int rows, int dim, ReadOnlySpan<float> weight, float weightOffset, float eps, Span<float> y) =>
            native.RmsNorm(x, rows, dim, weight, weightOffset, eps, y);

        public void LayerNorm(ReadOnlySpan<float> x, int rows, int dim, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps, Span<float> y) =>
            native.LayerNorm(x, rows, dim, weight, bias, eps, y);

        public void RopeTables(int pos0, int rows, ReadOnlySpan<float> invFreq, Span<float> cos, Span<float> sin) =>
            native.RopeTables(pos0, rows, invFreq, cos, sin);

        public void Rope(Span<float> x, int rows, int heads, int headDim, int rotaryDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin) =>
            native.Rope(x, rows, heads, headDim, rotaryDim, cos, sin);

        public void Activate(Activation activation, ReadOnlySpan<float> x, Span<float> y) => native.Activate(activation, x, y);

        public void GatedActivate(Activation activation, ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> y) =>
            native.GatedActivate(activation, gate, up, y);

        public void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y) => native.Add(a, b, y);

        public void Softcap(ReadOnlySpan<float> x, float cap, Span<float> y) => native.Softcap(x, cap, y);

        public void Attention(in AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, Span<float> output) =>
            ManagedKernels.Instance.Attention(shape, q, keys, values, output);

        public void Attention(in AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<Half> keys, ReadOnlySpan<Half> values, Span<float> output) =>
            ManagedKernels.Instance.Attention(shape, q, keys, values, output);
    }
}

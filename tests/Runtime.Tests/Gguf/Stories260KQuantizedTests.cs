using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Inference;
using OnDeviceLlm.Runtime.Quantization;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Gguf;

/// <summary>
/// stories260K re-quantized on load: how many of the 256 published greedy tokens survive. The numpy
/// simulation of Q8_0 diverges at token 114 with f32 activations and Q4_0 at 27; the bounds below are what this
/// runtime reaches on both kernel backends (q8: 185, q4: 27, measured), so a regression in the encoders or
/// kernels shows up as a shorter match. The f32 KV cache is pinned so only the weights' rounding is measured;
/// KvCacheTests measures these models with the f16 cache Auto gives them.
/// </summary>
public class Stories260KQuantizedTests
{
    [Theory]
    [InlineData("f16", KernelBackend.Managed, 256)]
    [InlineData("f16", KernelBackend.Native, 256)]
    [InlineData("q8", KernelBackend.Managed, 185)]
    [InlineData("q8", KernelBackend.Native, 185)]
    [InlineData("q4", KernelBackend.Managed, 27)]
    [InlineData("q4", KernelBackend.Native, 27)]
    public void GreedyTokensMatchTheF32ReferenceForAtLeast(string quant, KernelBackend backend, int matching)
    {
        var (tokens, _, _) = Stories260KTests.Reference();
        using var model = LanguageModel.Load(Stories260KTests.GgufPath, new LoadOptions { Quantization = QuantizationScheme.Parse(quant), Backend = backend, KvCacheType = KvCacheType.F32 });
        int[] ids = Stories260KTests.Greedy(model, 256);
        int same = 0;
        while (same < ids.Length && ids[same] == tokens[same]) same++;
        Assert.True(same >= matching, $"{quant} on {backend}: only the first {same} tokens match (expected at least {matching}).");
    }
}

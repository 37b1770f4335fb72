using OnDeviceLlm.Runtime.Conversion;
using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Import.Gguf;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Quantization;
using Xunit;
using static OnDeviceLlm.Runtime.Tests.Gguf.GgufTestFiles;

namespace OnDeviceLlm.Runtime.Tests.Gguf;

/// <summary>A GGUF runs from its own mapping: only tensors llama.cpp stores differently from the forward pass are copied.</summary>
public sealed class GgufInPlaceTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("odllm-gguf-map-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static bool IsRotary(string name) => name.EndsWith(".attn_q.weight", StringComparison.Ordinal) || name.EndsWith(".attn_k.weight", StringComparison.Ordinal);

    [Fact]
    public void Stories260KIsMappedInPlaceExceptLlamasPermutedQAndK()
    {
        using var model = LanguageModel.Load(Stories260KTests.GgufPath);
        var gguf = Assert.IsType<GgufModel>(model.File);
        Assert.Equal("gguf", gguf.Format);
        Assert.Equal(new FileInfo(Stories260KTests.GgufPath).Length, gguf.FileSize);
        Assert.Equal(gguf.Tensors.Where(t => IsRotary(t.Name)).Select(t => t.Name).Order(), gguf.CopiedTensors.Order());
        Assert.Equal(2 * model.Config.NumLayers, gguf.CopiedTensors.Count);
        foreach (var t in gguf.Tensors) Assert.Equal(!IsRotary(t.Name), gguf.IsMapped(t));
    }

    [Fact]
    public void InPlaceGivesTheSameLogitsAsTheConvertedModelFile()
    {
        string odlm = Path.Combine(_dir, "stories.odlm");
        ModelConverter.Convert(Stories260KTests.GgufPath, odlm, QuantizationScheme.Source);
        using var mapped = LanguageModel.Load(Stories260KTests.GgufPath);
        using var converted = LanguageModel.Load(odlm);
        Assert.IsType<ModelFile>(converted.File);
        foreach (var t in converted.File.Tensors) Assert.True(t.Bytes.SequenceEqual(mapped.File.Find(t.Name)!.Bytes), t.Name);
        int[] prompt = [1, 403, 407, 261, 500];
        Assert.Equal(converted.CreateSession().Prefill(prompt).ToArray(), mapped.CreateSession().Prefill(prompt).ToArray());
    }

    [Fact]
    public void KQuantTensorsAreCopiedAsQ8AndTheRestStaysMapped()
    {
        var metadata = LlamaMetadata();
        metadata[5] = Kv("llama.feed_forward_length", 256u);
        var tensors = LlamaTensors(GgmlType.Q8_0);
        for (int i = 0; i < tensors.Count; i++)
        {
            if (tensors[i].Name is "blk.0.ffn_gate.weight" or "blk.0.ffn_up.weight") tensors[i] = (tensors[i].Name, tensors[i].Dims[..^1].Append(256).ToArray(), GgmlType.Q8_0);
            if (tensors[i].Name == "blk.0.ffn_down.weight") tensors[i] = (tensors[i].Name, [256, tensors[i].Dims[1]], GgmlType.Q6_K);
        }
        string path = Path.Combine(_dir, "q6k.gguf");
        File.WriteAllBytes(path, Build(metadata, tensors, (name, length) => name == "blk.0.ffn_down.weight" ? new byte[length] : null!));
        using var model = GgufModel.Open(path);
        var down = model.Find("blk.0.ffn_down.weight")!;
        Assert.Equal(TensorType.Q8_0, down.Type);
        Assert.False(model.IsMapped(down));
        Assert.Contains("blk.0.ffn_down.weight", model.CopiedTensors);
        Assert.True(model.IsMapped(model.Find("blk.0.ffn_up.weight")!));
        Assert.True(model.IsMapped(model.Find("blk.0.attn_v.weight")!));
    }

    [Fact]
    public void AskingForAnotherQuantizationConvertsInsteadOfMapping()
    {
        using var model = LanguageModel.Load(Stories260KTests.GgufPath, new LoadOptions { Quantization = QuantizationScheme.Parse("q8") });
        Assert.IsType<ModelFile>(model.File);
        Assert.Equal("q8", model.File.Provenance.Quantization);
    }
}

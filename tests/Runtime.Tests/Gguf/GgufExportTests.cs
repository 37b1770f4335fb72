using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Inference;
using OnDeviceLlm.Runtime.Import.Gguf;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Quantization;
using OnDeviceLlm.Runtime.Tests.Fixtures;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Gguf;

/// <summary>
/// Every fixture model written as a GGUF in llama.cpp's conventions (interleaved Llama Q/K, Gemma norms + 1, fused
/// Falcon QKV, llama.cpp metadata keys) and imported back must still match Hugging Face transformers' numbers.
/// </summary>
public sealed class GgufExportTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("odllm-gguf-export-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static IEnumerable<object[]> Exportable() =>
        FixtureReference.Names().Except(["falcon-rw", "gemma2"]).Select(n => new object[] { n });

    [Theory, MemberData(nameof(Exportable))]
    public void ExportedThenImportedFixtureMatchesTransformers(string fixture)
    {
        var r = FixtureReference.Load(fixture);
        string gguf = Path.Combine(_dir, fixture + ".gguf");
        using (var source = LanguageModel.Load(r.Folder)) GgufExporter.Write(source.File, gguf);
        using (var file = GgufFile.Open(gguf))
        {
            Assert.DoesNotContain(file.Tensors, t => t.Name.EndsWith(".attn_k.weight", StringComparison.Ordinal) && file.Architecture == "falcon");
            Assert.NotNull(file.Metadata.String("tokenizer.ggml.model"));
        }
        using var model = LanguageModel.Load(gguf, new LoadOptions { Backend = KernelBackend.Managed, KvCacheType = KvCacheType.F32 });
        FixtureTests.AssertMatchesReference(model, r);
    }

    [Theory]
    [InlineData("falcon-rw", "Positions")]
    [InlineData("gemma2", "AttentionScale")]
    public void ModelsLlamaCppCannotExpressAreRefusedByName(string fixture, string field)
    {
        using var source = LanguageModel.Load(FixtureReference.Load(fixture).Folder);
        string gguf = Path.Combine(_dir, fixture + ".gguf");
        var ex = Assert.Throws<UnsupportedModelException>(() => GgufExporter.Write(source.File, gguf));
        Assert.Contains(field, ex.Message);
        Assert.False(File.Exists(gguf));
        Assert.False(File.Exists(gguf + ".partial"));
    }

    [Fact]
    public void Stories260KRoundTripsWithItsVocabularyAndWeightBytes()
    {
        string gguf = Path.Combine(_dir, "stories.gguf");
        using (var model = LanguageModel.Load(Stories260KTests.GgufPath)) GgufExporter.Write(model.File, gguf);
        using var original = GgufFile.Open(Stories260KTests.GgufPath);
        using var written = GgufFile.Open(gguf);
        foreach (var key in original.Metadata.Values.Keys.Where(k => k.StartsWith("tokenizer.ggml.", StringComparison.Ordinal) && !k.EndsWith("_id", StringComparison.Ordinal)))
            Assert.Equal(original.Metadata.Values[key].Value, written.Metadata.Values[key].Value);
        // Interleaved Q/K rows come back exactly as llama.cpp's converter wrote them.
        foreach (var info in original.Tensors)
            Assert.True(original.GetTensor(info.Name).Bytes.SequenceEqual(written.GetTensor(info.Name).Bytes), info.Name);
    }

    [Fact]
    public void QuantizedModelsExportTheirBlocksAsTheyAreAndInt8IsRefused()
    {
        string folder = FixtureReference.Load("llama").Folder;
        string gguf = Path.Combine(_dir, "q4.gguf");
        using (var q4 = LanguageModel.Load(folder, new LoadOptions { Quantization = QuantizationScheme.Q4 }))
        {
            GgufExporter.Write(q4.File, gguf);
            using var file = GgufFile.Open(gguf);
            var ffn = q4.File.Find("blk.0.ffn_up.weight")!;
            Assert.Equal(TensorType.Q4_0, ffn.Type);
            Assert.True(ffn.Bytes.SequenceEqual(file.GetTensor("blk.0.ffn_up.weight").Bytes));
        }
        using var int8 = LanguageModel.Load(folder, new LoadOptions { Quantization = QuantizationScheme.Int8 });
        var ex = Assert.Throws<UnsupportedModelException>(() => GgufExporter.Write(int8.File, Path.Combine(_dir, "int8.gguf")));
        Assert.Contains("Int8", ex.Message);
    }

    /// <summary>
    /// llama.cpp's qwen2 is Llama (optionally with q/k/v biases) whose Q/K rows stay in rotate-half order: the llama
    /// fixture's tensors written unpermuted under qwen2.* keys must still match transformers.
    /// </summary>
    [Fact]
    public void Qwen2GgufIsReadAsLlamaWithoutTheRopePermutation()
    {
        var r = FixtureReference.Load("llama");
        string gguf = Path.Combine(_dir, "qwen2.gguf");
        using (var source = LanguageModel.Load(r.Folder))
        {
            var c = source.Config;
            var metadata = new List<KeyValuePair<string, GgufValue>>
            {
                GgufTestFiles.Kv("general.architecture", "qwen2"),
                GgufTestFiles.Kv("qwen2.context_length", (uint)c.ContextLength),
                GgufTestFiles.Kv("qwen2.embedding_length", (uint)c.HiddenSize),
                GgufTestFiles.Kv("qwen2.block_count", (uint)c.NumLayers),
                GgufTestFiles.Kv("qwen2.feed_forward_length", (uint)c.IntermediateSize),
                GgufTestFiles.Kv("qwen2.attention.head_count", (uint)c.NumHeads),
                GgufTestFiles.Kv("qwen2.attention.head_count_kv", (uint)c.NumKvHeads),
                GgufTestFiles.Kv("qwen2.attention.layer_norm_rms_epsilon", c.NormEps),
                GgufTestFiles.Kv("qwen2.rope.freq_base", c.RopeTheta),
            };
            var tensors = source.File.Tensors.Select(t => (t.Name, t.Shape.Reverse().ToArray(), GgmlTypes.FromTensorType(t.Type))).ToList();
            File.WriteAllBytes(gguf, GgufTestFiles.Build(metadata, tensors, (name, _) => source.File.Find(name)!.Bytes.ToArray()));
        }
        using var model = LanguageModel.Load(gguf, new LoadOptions { Backend = KernelBackend.Managed });
        Assert.Equal("llama", model.Config.Architecture);
        FixtureTests.AssertMatchesReference(model, r);
    }
}

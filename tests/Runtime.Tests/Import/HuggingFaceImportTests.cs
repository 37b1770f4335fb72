using System.Text.Json.Nodes;
using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Tests.Fixtures;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Import;

/// <summary>Importing Hugging Face folders: older config layouts, and clear errors for what is not supported.</summary>
public class HuggingFaceImportTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("odllm-import-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    /// <summary>Copies a fixture folder, letting the test rewrite its config.json.</summary>
    private string CopyFixture(string fixture, Action<JsonObject> editConfig)
    {
        string source = Path.Combine(TestPaths.Fixtures, fixture), target = Path.Combine(_temp, fixture);
        Directory.CreateDirectory(target);
        foreach (var file in Directory.GetFiles(source)) File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(target, "config.json")))!.AsObject();
        editConfig(config);
        File.WriteAllText(Path.Combine(target, "config.json"), config.ToJsonString());
        return target;
    }

    /// <summary>transformers 4.x wrote rope_theta / partial_rotary_factor at the top level and torch_dtype instead of dtype.</summary>
    [Theory]
    [InlineData("phi2")]
    [InlineData("stablelm-2")]
    [InlineData("gemma2")]
    [InlineData("llama")]
    public void TransformersV4ConfigLayout_GivesTheSameNumbers(string fixture)
    {
        string folder = CopyFixture(fixture, c =>
        {
            var rope = c["rope_parameters"]!.AsObject();
            c.Remove("rope_parameters");
            c["rope_theta"] = rope["rope_theta"]!.GetValue<double>();
            if (rope["partial_rotary_factor"] is JsonNode p) c["partial_rotary_factor"] = p.GetValue<double>();
            c["torch_dtype"] = c["dtype"]!.GetValue<string>();
            c.Remove("dtype");
            c.Remove("layer_types"); // 4.x Gemma 2 slid on even layers, which is what this fixture's layer_types say
        });
        var r = FixtureReference.Load(fixture);
        using var model = LanguageModel.Load(folder, new LoadOptions { Backend = KernelBackend.Managed });
        FixtureTests.AssertMatchesReference(model, r);
    }

    [Fact]
    public void TokenizerFiles_AreEmbeddedVerbatimInTheModelFile()
    {
        string folder = CopyFixture("llama", _ => { });
        string tokenizerFolder = Path.Combine(TestPaths.Models, "llama2-tokenizer");
        foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(tokenizerFolder, name), Path.Combine(folder, name));
        string path = Path.Combine(_temp, "with-tokenizer.odlm");
        OnDeviceLlm.Runtime.Conversion.ModelConverter.Convert(folder, path, OnDeviceLlm.Runtime.Quantization.QuantizationScheme.Source);
        File.Delete(Path.Combine(folder, "tokenizer.json")); // the model file alone must carry it

        using var model = LanguageModel.Load(path);
        Assert.Equal(File.ReadAllBytes(Path.Combine(tokenizerFolder, "tokenizer.json")), model.File.Tokenizer.Files["tokenizer.json"]);
        var direct = OnDeviceLlm.Runtime.Tokenization.TextTokenizer.LoadFromPath(tokenizerFolder);
        const string text = "Hello world, this is a test of the embedded tokenizer.";
        Assert.Equal(direct.Encode(text), model.Tokenizer!.Encode(text));
        Assert.True(model.Special.AddBos);
        Assert.Equal([model.Special.Bos!.Value, .. direct.Encode(text)], model.EncodePrompt(text));
    }

    [Fact]
    public void UnknownArchitecture_NamesIt()
    {
        string folder = CopyFixture("llama", c => c["model_type"] = "mamba");
        var e = Assert.Throws<UnsupportedModelException>(() => LanguageModel.Load(folder));
        Assert.Contains("\"mamba\"", e.Message);
    }

    [Fact]
    public void UnsupportedRopeScaling_NamesIt()
    {
        string folder = CopyFixture("llama", c => c["rope_parameters"] = new JsonObject { ["rope_type"] = "yarn", ["rope_theta"] = 10000.0, ["factor"] = 4.0 });
        var e = Assert.Throws<UnsupportedModelException>(() => LanguageModel.Load(folder));
        Assert.Contains("yarn", e.Message);
    }

    [Fact]
    public void UnsupportedConfigOption_NamesIt()
    {
        string folder = CopyFixture("phi2", c => c["qk_layernorm"] = true);
        var e = Assert.Throws<UnsupportedModelException>(() => LanguageModel.Load(folder));
        Assert.Contains("qk_layernorm", e.Message);
    }

    [Fact]
    public void MissingConfig_IsAFormatError()
    {
        string folder = Path.Combine(_temp, "empty");
        Directory.CreateDirectory(folder);
        var e = Assert.Throws<ModelFormatException>(() => LanguageModel.Load(folder));
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void ConfigThatDisagreesWithTheWeights_IsAFormatError()
    {
        // A config claiming a wider FFN than the checkpoint holds must not run on mismatched shapes.
        string folder = CopyFixture("llama", c => c["intermediate_size"] = 200);
        var e = Assert.Throws<ModelFormatException>(() => LanguageModel.Load(folder));
        Assert.Contains("ffn", e.Message);
    }

    [Fact]
    public void MissingTensor_IsAFormatError()
    {
        // Two layers in the checkpoint, three in the config: layer 2's tensors are missing.
        string folder = CopyFixture("llama", c => c["num_hidden_layers"] = 3);
        var e = Assert.Throws<ModelFormatException>(() => LanguageModel.Load(folder));
        Assert.Contains("blk.2.", e.Message);
    }
}

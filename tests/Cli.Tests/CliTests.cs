using System.Text.Json;
using Xunit;

namespace OnDeviceLlm.Cli.Tests;

/// <summary>The DESIGN.md CLI contract, end to end against the fixtures.</summary>
public class CliTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("odllm-cli-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private static JsonElement Reference(string fixture) =>
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(CliHarness.Fixtures, fixture, "reference.json"))).RootElement;

    private static string Ids(JsonElement array) => string.Join(",", array.EnumerateArray().Select(e => e.GetInt32()));

    [Theory]
    [InlineData("llama")]
    [InlineData("falcon-rw")]
    [InlineData("gemma2")]
    public void ConvertThenLogitsAndGenerate_MatchTransformers(string fixture)
    {
        var r = Reference(fixture);
        string folder = Path.Combine(CliHarness.Fixtures, fixture), model = Path.Combine(_temp, fixture + ".odlm");
        var convert = CliHarness.Run("convert", folder, "-o", model, "--quant", "f32");
        Assert.True(convert.ExitCode == 0, convert.Stderr);

        var info = CliHarness.Run("info", model, "--json").Json();
        Assert.Equal(r.GetProperty("effective_config").GetProperty("num_hidden_layers").GetInt32(), info.GetProperty("num_layers").GetInt32());
        Assert.Equal("f32", info.GetProperty("quantization").GetString());

        var logits = CliHarness.Run("logits", model, "--ids", Ids(r.GetProperty("input_ids")), "--json").Json();
        Assert.Equal(r.GetProperty("argmax_per_position").EnumerateArray().Select(e => e.GetInt32()),
                     logits.GetProperty("argmax").EnumerateArray().Select(e => e.GetInt32()));
        var expected = r.GetProperty("logits_last").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var actual = logits.GetProperty("last_logits").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.Equal(expected.Length, actual.Length);
        Assert.All(expected.Zip(actual), p => Assert.True(Math.Abs(p.First - p.Second) <= 1e-4, $"{p.First} vs {p.Second}"));

        var generated = CliHarness.Run("generate", model, "--ids", Ids(r.GetProperty("input_ids")), "--max-new-tokens", "16",
                                       "--ignore-eos", "--temperature", "0", "--json").Json();
        Assert.Equal(r.GetProperty("greedy_new_tokens").EnumerateArray().Select(e => e.GetInt32()),
                     generated.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
    }

    [Fact]
    public void Logits_AcceptsAHuggingFaceFolderDirectly()
    {
        var r = Reference("phi2");
        var logits = CliHarness.Run("logits", Path.Combine(CliHarness.Fixtures, "phi2"), "--ids", Ids(r.GetProperty("input_ids")), "--json").Json();
        Assert.Equal(r.GetProperty("argmax_per_position").EnumerateArray().Select(e => e.GetInt32()),
                     logits.GetProperty("argmax").EnumerateArray().Select(e => e.GetInt32()));
    }

    [Fact]
    public void Tokenize_MatchesReference_ForTextAndTextsFile()
    {
        string folder = Path.Combine(CliHarness.Fixtures, "tokenizers", "bytelevel-bpe");
        var cases = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "reference-encodings.json"))).RootElement.GetProperty("cases")
            .EnumerateArray().ToArray();
        var first = cases.First(c => c.GetProperty("text").GetString()!.Length > 3);
        var single = CliHarness.Run("tokenize", Path.Combine(folder, "tokenizer.json"), "--text", first.GetProperty("text").GetString()!, "--json").Json();
        Assert.Equal(first.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()), single.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));

        string textsFile = Path.Combine(_temp, "texts.json");
        File.WriteAllText(textsFile, JsonSerializer.Serialize(cases.Select(c => c.GetProperty("text").GetString()).ToArray()));
        var many = CliHarness.Run("tokenize", folder, "--texts-file", textsFile, "--json").Json();
        var lists = many.GetProperty("ids").EnumerateArray().ToArray();
        Assert.Equal(cases.Length, lists.Length);
        for (int i = 0; i < cases.Length; i++)
            Assert.Equal(cases[i].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()), lists[i].EnumerateArray().Select(e => e.GetInt32()));
    }

    [Fact]
    public void MissingModel_FailsWithOneLine() =>
        CliHarness.AssertCleanFailure(CliHarness.Run("info", Path.Combine(_temp, "nope.odlm")), "does not exist");

    [Fact]
    public void IdOutsideVocabulary_FailsWithOneLine() =>
        CliHarness.AssertCleanFailure(CliHarness.Run("logits", Path.Combine(CliHarness.Fixtures, "llama"), "--ids", "1,2,99999"), "outside the vocabulary");

    [Fact]
    public void PromptLongerThanContext_FailsWithOneLine()
    {
        string ids = string.Join(",", Enumerable.Repeat(5, 300)); // fixtures hold 256 positions
        CliHarness.AssertCleanFailure(CliHarness.Run("generate", Path.Combine(CliHarness.Fixtures, "llama"), "--ids", ids), "context");
    }

    [Fact]
    public void TruncatedModelFile_FailsWithOneLine()
    {
        string model = Path.Combine(_temp, "llama.odlm");
        Assert.Equal(0, CliHarness.Run("convert", Path.Combine(CliHarness.Fixtures, "llama"), "-o", model).ExitCode);
        var bytes = File.ReadAllBytes(model);
        File.WriteAllBytes(model, bytes[..(bytes.Length / 2)]);
        CliHarness.AssertCleanFailure(CliHarness.Run("info", model), "llama.odlm");
    }

    [Fact]
    public void UnknownArchitecture_FailsWithOneLine()
    {
        string folder = Path.Combine(_temp, "mystery");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), """{"model_type": "mystery-net", "hidden_size": 8}""");
        CliHarness.AssertCleanFailure(CliHarness.Run("info", folder), "mystery-net");
    }

    [Fact]
    public void BadQuantization_FailsWithOneLine() =>
        CliHarness.AssertCleanFailure(CliHarness.Run("convert", Path.Combine(CliHarness.Fixtures, "llama"), "-o", Path.Combine(_temp, "x.odlm"), "--quant", "q3"), "q3");
}

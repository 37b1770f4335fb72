using System.Text.Json;
using Xunit;

namespace OnDeviceLlm.Cli.Tests;

/// <summary>GGUF files wherever the CLI takes a model or a tokenizer, on the real stories260K and tokenizer vocabularies.</summary>
public class GgufCliTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("odllm-cli-gguf-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private static string Models => Path.GetFullPath(Path.Combine(CliHarness.RepositoryRoot, "..", "shared", "models"));
    private static string Stories => Path.Combine(Models, "stories260K", "stories260K.gguf");

    /// <summary>llama2.c's CI text (`run stories260K.bin -t 0.0 -n 200`) and the 200 tokens after BOS that produce it.</summary>
    private static (string Text, int[] Tokens) Reference200()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Models, "stories260K", "reference-outputs.json")));
        string text = doc.RootElement.GetProperty("upstream_references")[1].GetProperty("expected_text").GetString()!;
        var all = doc.RootElement.GetProperty("computed_here").GetProperty("cases")[0].GetProperty("all_tokens");
        return (text, all.EnumerateArray().Skip(1).Take(200).Select(e => e.GetInt32()).ToArray());
    }

    private static int[] Ids(JsonElement json) => json.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();

    [Fact]
    public void GenerateFromAnEmptyPromptPrintsThePublishedText()
    {
        var (text, tokens) = Reference200();
        var result = CliHarness.Run("generate", Stories, "--prompt", "", "--max-new-tokens", "200", "--temperature", "0", "--ignore-eos", "--json").Json();
        Assert.Equal(tokens, Ids(result));
        Assert.Equal(text, result.GetProperty("text").GetString());

        var plain = CliHarness.Run("generate", Stories, "--prompt", "", "--max-new-tokens", "200", "--temperature", "0", "--ignore-eos");
        Assert.Equal(0, plain.ExitCode);
        Assert.Equal(text + "\n", plain.Stdout);
    }

    [Fact]
    public void ConvertedGgufGeneratesTheSameTokensFromIds()
    {
        var (_, tokens) = Reference200();
        string odlm = Path.Combine(_temp, "stories.odlm");
        var convert = CliHarness.Run("convert", Stories, "-o", odlm);
        Assert.True(convert.ExitCode == 0, convert.Stderr);
        var info = CliHarness.Run("info", odlm, "--json").Json();
        Assert.Equal("llama", info.GetProperty("architecture").GetString());
        var result = CliHarness.Run("generate", odlm, "--ids", "1", "--max-new-tokens", "200", "--temperature", "0", "--ignore-eos", "--json").Json();
        Assert.Equal(tokens, Ids(result));
    }

    [Fact]
    public void TokenizeAcceptsAVocabOnlyGguf()
    {
        string gguf = Path.Combine(Models, "llama2-tokenizer", "ggml-vocab-llama-spm.gguf");
        string model = Path.Combine(Models, "llama2-tokenizer", "tokenizer.model");
        foreach (var args in new[] { new[] { "--text", "Hello world, ünïcode!" }, ["--text", " leading  spaces", "--add-special"] })
        {
            var fromGguf = CliHarness.Run(["tokenize", gguf, .. args, "--json"]).Json();
            var fromModel = CliHarness.Run(["tokenize", model, .. args, "--json"]).Json();
            Assert.Equal(Ids(fromModel), Ids(fromGguf));
        }
    }

    [Fact]
    public void AMalformedGgufFailsWithOneClearLine()
    {
        string bad = Path.Combine(_temp, "bad.gguf");
        File.WriteAllBytes(bad, "GGUF\u0003\0\0\0"u8.ToArray().Concat(new byte[16]).ToArray()[..20]);
        CliHarness.AssertCleanFailure(CliHarness.Run("generate", bad, "--ids", "1"), "bad.gguf");
        CliHarness.AssertCleanFailure(CliHarness.Run("convert", bad, "-o", Path.Combine(_temp, "x.odlm")), "too short");
    }

    [Fact]
    public void ConvertWritesAGgufForLlamaCppFromAFolderOrAModelFile()
    {
        string folder = Path.Combine(CliHarness.Fixtures, "llama"), odlm = Path.Combine(_temp, "llama.odlm");
        string viaFolder = Path.Combine(_temp, "a.gguf"), viaOdlm = Path.Combine(_temp, "b.gguf");
        Assert.Equal(0, CliHarness.Run("convert", folder, "-o", viaFolder, "--quant", "q8").ExitCode);
        Assert.Equal(0, CliHarness.Run("convert", folder, "-o", odlm, "--quant", "q8").ExitCode);
        var export = CliHarness.Run("convert", odlm, "-o", viaOdlm);
        Assert.True(export.ExitCode == 0, export.Stderr);
        Assert.Equal(File.ReadAllBytes(viaFolder), File.ReadAllBytes(viaOdlm));
        Assert.Empty(Directory.GetFiles(_temp, "*.partial"));

        var ids = "1,5,9,200";
        var fromGguf = CliHarness.Run("logits", viaOdlm, "--ids", ids, "--json").Json();
        var fromOdlm = CliHarness.Run("logits", odlm, "--ids", ids, "--json").Json();
        Assert.Equal(fromOdlm.GetProperty("last_logits").ToString(), fromGguf.GetProperty("last_logits").ToString());

        CliHarness.AssertCleanFailure(CliHarness.Run("convert", odlm, "-o", viaOdlm, "--quant", "q4"), "--quant");
    }
}

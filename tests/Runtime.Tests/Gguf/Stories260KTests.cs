using System.Text.Json;
using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Inference;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Gguf;

/// <summary>
/// Karpathy's trained stories260K through its GGUF: greedy generation from BOS alone must reproduce the texts
/// llama2.c publishes (256 steps in doc/stories260K.md, 200 steps in its CI test) byte for byte.
/// </summary>
public class Stories260KTests
{
    internal static string Folder => Path.Combine(TestPaths.Models, "stories260K");
    internal static string GgufPath => Path.Combine(Folder, "stories260K.gguf");

    /// <summary>The 256 greedy tokens after BOS (llama2.c run.c, computed from the .bin) and the two upstream texts.</summary>
    internal static (int[] Tokens, string Text256, string Text200) Reference()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Folder, "reference-outputs.json")));
        var root = doc.RootElement;
        var bosOnly = root.GetProperty("computed_here").GetProperty("cases").EnumerateArray().Single(c => c.GetProperty("prompt").GetString() == "");
        int[] all = bosOnly.GetProperty("all_tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(1, all[0]);
        var upstream = root.GetProperty("upstream_references").EnumerateArray().Select(e => e.GetProperty("expected_text").GetString()!).ToArray();
        return (all[1..], upstream[0], upstream[1]);
    }

    internal static int[] Greedy(LanguageModel model, int count)
    {
        var generator = new Generator(model.CreateSession(), new GenerationOptions { MaxNewTokens = count, IgnoreEos = true }, model.Special.Eos);
        return generator.Generate([model.Special.Bos!.Value]).ToArray();
    }

    [Theory]
    [InlineData(KernelBackend.Managed)]
    [InlineData(KernelBackend.Native)]
    public void GreedyFromBosReproducesThePublishedTextsByteForByte(KernelBackend backend)
    {
        var (tokens, text256, text200) = Reference();
        using var model = LanguageModel.Load(GgufPath, new LoadOptions { Backend = backend });
        Assert.Equal("llama", model.Config.Architecture);
        Assert.Equal(1, model.Special.Bos);
        Assert.True(model.Special.AddBos);

        int[] ids = Greedy(model, 256);
        Assert.Equal(tokens, ids);
        var tokenizer = model.RequireTokenizer();
        Assert.Equal(text256, tokenizer.Decode(ids));
        Assert.Equal(text200, tokenizer.Decode(ids.AsSpan(0, 200)));
    }

    [Fact]
    public void EmptyPromptEncodesToBosAlone()
    {
        using var model = LanguageModel.Load(GgufPath);
        Assert.Equal([1], model.EncodePrompt(""));
        // The prompted reference cases encode as llama2.c does (BOS, dummy-prefix space).
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Folder, "reference-outputs.json")));
        foreach (var c in doc.RootElement.GetProperty("computed_here").GetProperty("cases").EnumerateArray())
        {
            int[] expected = c.GetProperty("all_tokens").EnumerateArray().Take(c.GetProperty("prompt_tokens").GetArrayLength()).Select(e => e.GetInt32()).ToArray();
            Assert.Equal(expected, model.EncodePrompt(c.GetProperty("prompt").GetString()!));
        }
    }

    [Fact]
    public void HuggingFaceConversionOfTheSameWeightsGivesTheSameGreedyTokens()
    {
        // hf-derived holds q_proj/k_proj in rotate-half order; the GGUF holds llama.cpp's interleaved order, which
        // the importer undoes. Equal tokens over 256 steps show the permutation is inverted exactly.
        var (tokens, _, _) = Reference();
        using var hf = LanguageModel.Load(Path.Combine(Folder, "hf-derived"));
        using var gguf = LanguageModel.Load(GgufPath);
        Assert.Equal(tokens, Greedy(hf, 256));
        var session = gguf.CreateSession();
        var hfSession = hf.CreateSession();
        float[] a = session.Prefill([1, 403, 407]).ToArray(), b = hfSession.Prefill([1, 403, 407]).ToArray();
        for (int i = 0; i < a.Length; i++) Assert.Equal(b[i], a[i], 1e-5f);
    }
}

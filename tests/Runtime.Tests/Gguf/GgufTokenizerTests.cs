using System.Text.Json;
using OnDeviceLlm.Runtime.Import.Gguf;
using OnDeviceLlm.Runtime.Tokenization;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Gguf;

/// <summary>The real tokenizers' vocab-only GGUF files (llama.cpp's models/ggml-vocab-*.gguf) against the gold encodings.</summary>
public class GgufTokenizerTests
{
    private static readonly Dictionary<string, TextTokenizer> Loaded = new();

    internal static readonly (string Folder, string File)[] Vocabularies =
    [
        ("llama2-tokenizer", "ggml-vocab-llama-spm.gguf"), ("falcon-tokenizer", "ggml-vocab-falcon.gguf"),
        ("gpt2-tokenizer", "ggml-vocab-gpt-2.gguf"), ("stablelm-3b-4e1t-tokenizer", "ggml-vocab-stablelm.gguf"),
        ("phi-3-tokenizer", "ggml-vocab-phi-3.gguf"),
    ];

    private static TextTokenizer Tokenizer(string path)
    {
        lock (Loaded)
        {
            if (!Loaded.TryGetValue(path, out var tok)) Loaded[path] = tok = TextTokenizer.LoadFromPath(path);
            return tok;
        }
    }

    public static IEnumerable<object[]> Cases()
    {
        foreach (var (folder, file) in Vocabularies)
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(TestPaths.Models, folder, "reference-encodings.json")));
            int i = 0;
            foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
                yield return [new Tokenization.TokenizerCase(Path.Combine(folder, file), i++, c.GetProperty("input").GetString()!,
                    c.GetProperty("add_special_tokens").GetBoolean(), c.GetProperty("expected_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                    c.TryGetProperty("expected_decoded", out var d) ? d.GetString() : null, null)];
        }
    }

    [Theory, MemberData(nameof(Cases))]
    public void VocabOnlyGgufEncodesLikeTheReference(Tokenization.TokenizerCase c)
    {
        var tok = Tokenizer(Path.Combine(TestPaths.Models, c.Source));
        Assert.Equal(c.Ids, tok.Encode(c.Text, c.AddSpecialTokens).ToArray());
    }

    [Theory]
    [InlineData("llama2-tokenizer/ggml-vocab-llama-spm.gguf", "llama2-tokenizer/tokenizer.model")]
    [InlineData("gpt2-tokenizer/ggml-vocab-gpt-2.gguf", "gpt2-tokenizer/tokenizer.json")]
    [InlineData("falcon-tokenizer/ggml-vocab-falcon.gguf", "falcon-tokenizer/tokenizer.json")]
    public void GgufDecodesLikeTheOriginalTokenizerFile(string gguf, string original)
    {
        var a = Tokenizer(Path.Combine(TestPaths.Models, gguf));
        var b = TextTokenizer.LoadFromPath(Path.Combine(TestPaths.Models, original));
        string text = "Hello world! Ünïcödé 日本語 🦙 tabs\tand\nnewlines   and 12345 digits";
        int[] ids = b.Encode(text).ToArray();
        Assert.Equal(ids, a.Encode(text));
        Assert.Equal(b.Decode(ids), a.Decode(ids));
        Assert.Equal(b.VocabSize, a.VocabSize);
    }

    [Fact]
    public void EmbeddedVocabOnlyGgufRoundTripsThroughTokenizerFiles()
    {
        using var file = GgufFile.Open(Path.Combine(TestPaths.Models, "phi-3-tokenizer", "ggml-vocab-phi-3.gguf"));
        var files = GgufTokenizer.Extract(file.Metadata);
        Assert.Equal([GgufTokenizer.FileName], files.Files.Keys);
        var (metadata, tensors) = GgufFile.ParseHeader("embedded", files.Files[GgufTokenizer.FileName]);
        Assert.Empty(tensors);
        Assert.Equal(file.Metadata.Array<string>(GgufTokenizer.TokensKey), metadata.Array<string>(GgufTokenizer.TokensKey));
        Assert.Equal(file.Metadata.String("tokenizer.chat_template"), metadata.String("tokenizer.chat_template"));
        Assert.False(metadata.Contains("phi3.block_count"));
        var tok = TextTokenizer.Load(files);
        Assert.Equal(Tokenizer(file.Path).Encode("Hello <|user|> world"), tok.Encode("Hello <|user|> world"));
    }

    [Fact]
    public void SpecialTokensComeFromTheMetadata()
    {
        using var file = GgufFile.Open(Path.Combine(TestPaths.Models, "phi-3-tokenizer", "ggml-vocab-phi-3.gguf"));
        var special = GgufImporter.ReadSpecialTokens(file.Metadata, null);
        Assert.Equal(1, special.Bos);
        Assert.Equal([32000], special.Eos);
        Assert.Equal(32000, special.Pad);
        Assert.True(special.AddBos);
        Assert.StartsWith("{{ bos_token }}", special.ChatTemplate);
    }

    [Fact]
    public void UnsupportedTokenizerModelIsATokenizerException()
    {
        var bytes = GgufWriter.MetadataOnly([
            new("tokenizer.ggml.model", new GgufValue(GgufValueType.String, "t5")),
            new("tokenizer.ggml.tokens", new GgufValue(GgufValueType.Array, new[] { "a" }, GgufValueType.String))]);
        var files = new Model.TokenizerFiles(new Dictionary<string, byte[]> { [GgufTokenizer.FileName] = bytes });
        var ex = Assert.Throws<TokenizerException>(() => TextTokenizer.Load(files));
        Assert.Contains("\"t5\"", ex.Message);
    }

    [Fact]
    public void VocabOnlyHeadersCarryTheirArchitecturesMetadata()
    {
        GgufFile Open(string folder, string file) => GgufFile.Open(Path.Combine(TestPaths.Models, folder, file));
        using (var falcon = Open("falcon-tokenizer", "ggml-vocab-falcon.gguf"))
        {
            Assert.Equal("falcon", falcon.Architecture);
            Assert.Equal("jploski", falcon.Metadata.String("falcon.tensor_data_layout"));
            Assert.Equal(1, falcon.Metadata.Int("falcon.attention.head_count_kv"));
            Assert.Equal(71, falcon.Metadata.Int("falcon.attention.head_count"));
            Assert.Equal(4544, falcon.Metadata.Int("falcon.embedding_length"));
            Assert.Equal("falcon", falcon.Metadata.String("tokenizer.ggml.pre"));
            Assert.Equal(64784, falcon.Metadata.Array<string>("tokenizer.ggml.merges")!.Length);
        }
        using (var stablelm = Open("stablelm-3b-4e1t-tokenizer", "ggml-vocab-stablelm.gguf"))
        {
            Assert.Equal("stablelm-3b-4e1t", stablelm.Metadata.String("general.name"));
            Assert.Equal(20, stablelm.Metadata.Int("stablelm.rope.dimension_count"));
            Assert.True(stablelm.Metadata.Bool("stablelm.use_parallel_residual"));
            Assert.Equal(50304, stablelm.Metadata.Array<string>(GgufTokenizer.TokensKey)!.Length);
        }
        using (var phi3 = Open("phi-3-tokenizer", "ggml-vocab-phi-3.gguf"))
        {
            Assert.Equal("phi3", phi3.Architecture);
            Assert.Equal(96, phi3.Metadata.Int("phi3.rope.dimension_count"));
            Assert.Equal(4096, phi3.Metadata.Int("phi3.rope.scaling.original_context_length"));
            Assert.Equal(10000f, phi3.Metadata.Float("phi3.rope.freq_base"));
            Assert.Empty(phi3.Tensors);
        }
    }

    [Fact]
    public void LoadingAVocabOnlyGgufAsAModelSaysSo()
    {
        string path = Path.Combine(TestPaths.Models, "gpt2-tokenizer", "ggml-vocab-gpt-2.gguf");
        var ex = Assert.Throws<ModelFormatException>(() => LanguageModel.Load(path).Dispose());
        Assert.Contains("vocab-only", ex.Message);
    }

    /// <summary>
    /// Llama 3's ("llama-bpe": split regex, ignore_merges, BOS by default) and Qwen 2's pre-tokenizers on GPT-2's
    /// vocabulary; the ids are what llama.cpp (LLamaSharp.Backend.Cpu 0.30.0) produced for the same files.
    /// </summary>
    [Theory]
    [InlineData("llama-bpe", "I'LL pay 1234567 dollars", new[] { 50256, 40, 6, 3069, 1414, 220, 10163, 29228, 22, 5054 })]
    [InlineData("llama-bpe", "Hello\n\n\n   world!!", new[] { 50256, 15496, 628, 198, 220, 220, 995, 3228 })]
    [InlineData("llama-bpe", "  leading and trailing  ", new[] { 50256, 220, 3756, 290, 25462, 220, 220 })]
    [InlineData("llama-bpe", "don't stop", new[] { 50256, 9099, 470, 2245 })]
    [InlineData("qwen2", "I'LL pay 1234567 dollars", new[] { 40, 6, 3069, 1414, 220, 16, 17, 18, 19, 20, 21, 22, 5054 })]
    [InlineData("qwen2", "Hello\n\n\n   world!!", new[] { 15496, 628, 198, 220, 220, 995, 3228 })]
    public void ByteLevelPreTokenizersMatchLlamaCpp(string pre, string text, int[] expected)
    {
        using var gpt2 = GgufFile.Open(Path.Combine(TestPaths.Models, "gpt2-tokenizer", "ggml-vocab-gpt-2.gguf"));
        var metadata = gpt2.Metadata.Values.Select(kv => kv.Key == "tokenizer.ggml.pre" ? new(kv.Key, new GgufValue(GgufValueType.String, pre)) : kv);
        var files = new Model.TokenizerFiles(new Dictionary<string, byte[]> { [GgufTokenizer.FileName] = GgufWriter.MetadataOnly(metadata) });
        Assert.Equal(expected, TextTokenizer.Load(files).Encode(text, addSpecialTokens: true));
    }

    /// <summary>Chat markers and BOS/EOS/UNK spelled in the text, as llama.cpp (LLamaSharp.Backend.Cpu 0.30.0, parse_special) encodes them.</summary>
    [Theory]
    [InlineData("phi-3-tokenizer/ggml-vocab-phi-3.gguf", "<s><|user|>\nHi<|end|>\n<|assistant|>\n", new[] { 1, 32010, 6324, 32007, 32001 })]
    [InlineData("phi-3-tokenizer/ggml-vocab-phi-3.gguf", "<|system|>\nYou are helpful.<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n",
        new[] { 32006, 887, 526, 8444, 29889, 32007, 32010, 1724, 338, 29871, 29906, 29974, 29906, 29973, 32007, 32001 })]
    [InlineData("llama2-tokenizer/ggml-vocab-llama-spm.gguf", "Hello</s> world <unk>", new[] { 15043, 2, 29871, 3186, 29871, 0 })]
    public void SpecialTokensSpelledInTheTextAreMatchedLikeLlamaCpp(string file, string text, int[] expected)
    {
        var tok = Tokenizer(Path.Combine(TestPaths.Models, file));
        Assert.Equal(expected, tok.Encode(text));
        Assert.All(expected.Where(id => id == 0 || id >= 32000 || id is 1 or 2), id => Assert.True(tok.IsSpecial(id)));
    }
}

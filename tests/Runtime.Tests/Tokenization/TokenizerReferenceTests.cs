using System.Text.Json;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Tokenization;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Tokenization;

/// <summary>One reference case; ToString names it in the test runner.</summary>
public sealed record TokenizerCase(string Source, int Index, string Text, bool AddSpecialTokens, int[] Ids, string? Decoded, string? DecodedSkipSpecial)
{
    public override string ToString() => $"{Source} #{Index} {JsonSerializer.Serialize(Text.Length > 40 ? Text[..40] + "…" : Text)}";
}

public class TokenizerReferenceTests
{
    private static readonly Dictionary<string, TextTokenizer> Loaded = new();

    internal static string SharedDir()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "Connector.sln"))) dir = Path.GetDirectoryName(dir);
        if (dir is null) throw new InvalidOperationException("Connector.sln not found above the test binaries.");
        return Path.GetFullPath(Path.Combine(dir, "..", "shared"));
    }

    private static TextTokenizer Tokenizer(string source)
    {
        lock (Loaded)
        {
            if (!Loaded.TryGetValue(source, out TextTokenizer? tok))
                Loaded[source] = tok = TextTokenizer.LoadFromPath(Path.Combine(SharedDir(), source));
            return tok;
        }
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
    private static string? Str(JsonElement c, string name) => c.TryGetProperty(name, out JsonElement v) ? v.GetString() : null;

    public static IEnumerable<object[]> FixtureCases()
    {
        foreach (string folder in new[] { "fixtures/tokenizers/spm-bpe", "fixtures/tokenizers/bytelevel-bpe" })
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(SharedDir(), folder, "reference-encodings.json")));
            int i = 0;
            foreach (JsonElement c in doc.RootElement.GetProperty("cases").EnumerateArray())
                yield return [new TokenizerCase(folder, i++, c.GetProperty("text").GetString()!, false, Ints(c.GetProperty("ids")), Str(c, "decoded"), Str(c, "decoded_skip_special"))];
        }
    }

    // Each real tokenizer through every file kind its folder holds (GGUF vocabularies are the importer's).
    public static IEnumerable<object[]> ModelCases()
    {
        (string Folder, string File)[] sources =
        [
            ("falcon-tokenizer", "tokenizer.json"), ("gpt2-tokenizer", "tokenizer.json"), ("llama2-tokenizer", "tokenizer.json"),
            ("llama2-tokenizer", "tokenizer.model"), ("phi-2-tokenizer", ""), ("stablelm-3b-4e1t-tokenizer", "tokenizer.json"),
            ("gemma-tokenizer", "tokenizer.json"),
        ];
        foreach ((string folder, string file) in sources)
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(SharedDir(), "models", folder, "reference-encodings.json")));
            int i = 0;
            foreach (JsonElement c in doc.RootElement.GetProperty("cases").EnumerateArray())
                yield return [new TokenizerCase(Path.Combine("models", folder, file), i++, c.GetProperty("input").GetString()!, c.GetProperty("add_special_tokens").GetBoolean(),
                    Ints(c.GetProperty("expected_ids")), Str(c, "expected_decoded"), Str(c, "expected_decoded_skip_special"))];
        }
    }

    [Theory]
    [MemberData(nameof(FixtureCases))]
    public void FixtureEncodesAndDecodesLikeReference(TokenizerCase c) => Verify(c);

    [Theory]
    [MemberData(nameof(ModelCases))]
    public void RealTokenizerEncodesAndDecodesLikeReference(TokenizerCase c) => Verify(c);

    private static void Verify(TokenizerCase c)
    {
        TextTokenizer tok = Tokenizer(c.Source);
        int[] ids = tok.Encode(c.Text, c.AddSpecialTokens).ToArray();
        Assert.Equal(c.Ids, ids);
        if (c.Decoded is not null) Assert.Equal(c.Decoded, tok.Decode(ids));
        if (c.DecodedSkipSpecial is not null) Assert.Equal(c.DecodedSkipSpecial, tok.Decode(ids, skipSpecialTokens: true));
    }
}

public class TokenizerBehaviourTests
{
    private static string Shared(string relative) => Path.Combine(TokenizerReferenceTests.SharedDir(), relative);

    [Fact]
    public void ByteLevelSpecialTokensAreMatchedWithoutAddingSpecialsAndSkippedOnDecode()
    {
        TextTokenizer tok = TextTokenizer.LoadFromPath(Shared("fixtures/tokenizers/bytelevel-bpe"));
        Assert.Equal(1001, tok.VocabSize);
        Assert.Equal(1000, tok.TokenToId(">>TITLE<<"));
        Assert.True(tok.IsSpecial(1000));
        Assert.False(tok.IsSpecial(tok.TokenToId("Ġt")!.Value));
        IReadOnlyList<int> ids = tok.Encode(">>TITLE<<x<|endoftext|>");
        Assert.Equal([1000, tok.TokenToId("x")!.Value, 0], ids);
        Assert.Equal("x", tok.Decode(ids.ToArray(), skipSpecialTokens: true));
    }

    [Fact]
    public void SentencePieceAddsBosOnlyWhenAskedAndKeepsControlTextPlain()
    {
        TextTokenizer tok = TextTokenizer.LoadFromPath(Shared("fixtures/tokenizers/spm-bpe/tokenizer.model"));
        Assert.Equal(1000, tok.VocabSize);
        Assert.Equal([1], tok.Encode("", addSpecialTokens: true));
        Assert.Equal(tok.Encode("hi"), tok.Encode("hi", addSpecialTokens: true).Skip(1));
        Assert.DoesNotContain(1, tok.Encode("<s>"));
        Assert.True(tok.IsSpecial(1));
        Assert.Equal(2, tok.TokenToId("</s>"));
    }

    [Fact]
    public void GemmaLoadsAsBpeWithByteFallbackUnderTheLibrary()
    {
        TextTokenizer tok = TextTokenizer.LoadFromPath(Shared("models/gemma-tokenizer"));
        Assert.IsType<Microsoft.ML.Tokenizers.BpeTokenizer>(tok.Inner);
        Assert.Equal(256000, tok.VocabSize);
        // U+10FFFD is not in the vocabulary: it must come out as its four UTF-8 bytes and decode back.
        IReadOnlyList<int> ids = tok.Encode("a\U0010FFFD");
        Assert.Equal(5, ids.Count);
        Assert.Equal("a\U0010FFFD", tok.Decode(ids.ToArray()));
    }

    [Fact]
    public void MalformedTokenizerJsonIsATokenizerExceptionNamingTheFile()
    {
        var files = new TokenizerFiles(new Dictionary<string, byte[]> { ["tokenizer.json"] = "{\"model\": {\"type\": \"BPE\", \"vocab\": {"u8.ToArray() });
        var ex = Assert.Throws<TokenizerException>(() => TextTokenizer.Load(files));
        Assert.StartsWith("tokenizer.json:", ex.Message);
    }

    [Fact]
    public void UnsupportedModelTypeIsATokenizerException()
    {
        var files = new TokenizerFiles(new Dictionary<string, byte[]> { ["tokenizer.json"] = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}"u8.ToArray() });
        var ex = Assert.Throws<TokenizerException>(() => TextTokenizer.Load(files));
        Assert.Contains("WordPiece", ex.Message);
    }

    [Fact]
    public void CorruptTokenizerModelIsATokenizerException()
    {
        var files = new TokenizerFiles(new Dictionary<string, byte[]> { ["tokenizer.model"] = [0x0A, 0xFF, 0x01, 0x02] });
        var ex = Assert.Throws<TokenizerException>(() => TextTokenizer.Load(files));
        Assert.StartsWith("tokenizer.model:", ex.Message);
    }

    [Fact]
    public void FolderWithoutTokenizerIsATokenizerException()
    {
        string dir = Directory.CreateTempSubdirectory("odllm-tok-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "config.json"), "{}");
            var ex = Assert.Throws<TokenizerException>(() => TextTokenizer.LoadFromPath(dir));
            Assert.Contains("no tokenizer", ex.Message);
            Assert.Throws<TokenizerException>(() => TextTokenizer.Load(TokenizerFiles.None));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void VocabJsonWithoutMergesIsATokenizerException()
    {
        var files = new TokenizerFiles(new Dictionary<string, byte[]> { ["vocab.json"] = "{\"a\": 0}"u8.ToArray() });
        var ex = Assert.Throws<TokenizerException>(() => TextTokenizer.Load(files));
        Assert.StartsWith("merges.txt:", ex.Message);
    }

    [Fact]
    public void DecodingAnIdOutsideTheVocabularyIsATokenizerException()
    {
        TextTokenizer tok = TextTokenizer.LoadFromPath(Shared("fixtures/tokenizers/bytelevel-bpe"));
        Assert.Throws<TokenizerException>(() => tok.Decode([5, 1001]));
        Assert.Throws<TokenizerException>(() => tok.Decode([-1]));
    }

    [Fact]
    public void ReadFilesReturnsWhatLoadUses()
    {
        TokenizerFiles files = TextTokenizer.ReadFiles(Shared("models/phi-2-tokenizer"));
        Assert.Equal(new[] { "added_tokens.json", "merges.txt", "vocab.json" }, files.Files.Keys.Order());
        TextTokenizer tok = TextTokenizer.Load(files);
        Assert.Equal([50286], tok.Encode("  "));
    }
}

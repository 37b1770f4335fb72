using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Tokenization;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Tokenization;

/// <summary>LongWordBpe must give the library's BpeTokenizer result for one word, token for token, offsets included.</summary>
public class LongWordBpeTests
{
    private static string Shared(string relative) => Path.Combine(TokenizerReferenceTests.SharedDir(), relative);

    /// <summary>English without spaces or added-token markup (&lt;s&gt;), with CJK, accents, emoji (surrogate pairs), a lone surrogate and chars no vocabulary has.</summary>
    private static string LongWord(int length, string spaceAs)
    {
        string prose = File.ReadAllText(Shared("DESIGN.md"));
        var random = new Random(12345);
        string[] extras = ["中", "文字", "é", "ß", "\u0301", "🦊", "😀", "\U0010FFFD", "\U0010FFFD\U0010FFFD", "\uD800", "\u0378", "▁▁", "!!!!"];
        var sb = new StringBuilder();
        for (int i = 0; sb.Length < length; i++)
        {
            char c = prose[i % prose.Length];
            if (c is '<' or '>') continue;
            sb.Append(char.IsWhiteSpace(c) ? spaceAs : c.ToString());
            if (random.Next(12) == 0) sb.Append(extras[random.Next(extras.Length)]);
        }
        return sb.ToString();
    }

    private static (Dictionary<string, int> Vocab, List<string> Merges, string? Unk, bool Fuse) ReadModel(string tokenizerJson)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(tokenizerJson));
        JsonElement model = doc.RootElement.GetProperty("model");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (JsonProperty p in model.GetProperty("vocab").EnumerateObject()) vocab[p.Name] = p.Value.GetInt32();
        var merges = new List<string>();
        foreach (JsonElement m in model.GetProperty("merges").EnumerateArray())
            merges.Add(m.ValueKind == JsonValueKind.String ? m.GetString()! : m[0].GetString() + " " + m[1].GetString());
        string? unk = model.TryGetProperty("unk_token", out JsonElement u) && u.ValueKind == JsonValueKind.String ? u.GetString() : null;
        bool byteFallback = model.TryGetProperty("byte_fallback", out JsonElement b) && b.ValueKind == JsonValueKind.True;
        bool fuse = model.TryGetProperty("fuse_unk", out JsonElement f) && f.ValueKind == JsonValueKind.True;
        return (vocab, merges, unk, !byteFallback && fuse);
    }

    /// <summary>Offsets are compared only with an unknown token: without one the library's offsets skip the dropped chars, and nothing reads them.</summary>
    private static void AssertSameAsLibrary(Tokenizer library, LongWordBpe ours, string word, bool compareOffsets = true)
    {
        IReadOnlyList<EncodedToken> expected = library.EncodeToTokens(word, out _, considerPreTokenization: false, considerNormalization: false);
        var actual = new List<(int Id, int Start, int Length)>();
        ours.Encode(word, actual);
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            (int offset, int length) = expected[i].Offset.GetOffsetAndLength(word.Length);
            bool same = compareOffsets ? (expected[i].Id, offset, length) == actual[i] : expected[i].Id == actual[i].Id;
            Assert.True(same, $"token {i}: library {(expected[i].Id, offset, length)}, ours {actual[i]}");
        }
    }

    [Theory]
    [InlineData("models/gemma-tokenizer/tokenizer.json", "▁")]
    [InlineData("models/llama2-tokenizer/tokenizer.json", "")]
    [InlineData("models/falcon-tokenizer/tokenizer.json", null)]
    [InlineData("models/gpt2-tokenizer/tokenizer.json", null)]
    public void RealVocabulariesMergeLikeTheLibrary(string source, string? spaceAs)
    {
        var (vocab, merges, unk, fuse) = ReadModel(Shared(source));
        LongWordBpe ours = LongWordBpe.Create(vocab, merges, unk is not null && vocab.TryGetValue(unk, out int u) ? u : -1, fuse);
        Tokenizer library = TextTokenizer.LoadFromPath(Shared(source)).Inner;
        // Byte-level vocabularies see the UTF-8 bytes as GPT-2 chars; SentencePiece ones see the text with ▁ for spaces.
        string word = spaceAs is null ? HfNormalizer.ToByteLevel(LongWord(1500, ""), prefixSpace: false) : LongWord(3000, spaceAs);
        Assert.True(word.Length >= LongWordBpe.MinLength);
        AssertSameAsLibrary(library, ours, word);
    }

    [Theory]
    [InlineData(true, true)]
    [InlineData(true, false)]
    [InlineData(false, false)]
    public void UnknownCharsAreFusedKeptOrDroppedLikeTheLibrary(bool hasUnknownToken, bool fuse)
    {
        // A vocabulary that knows only a few letters: most chars are unknown, in runs; without an unknown token
        // the library drops them and merges across the gap.
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal) { ["<unk>"] = 0, ["e"] = 1, ["t"] = 2, ["h"] = 3, ["th"] = 4, ["the"] = 5, ["ee"] = 6, ["eee"] = 7 };
        var merges = new List<string> { "t h", "th e", "e e", "ee e" };
        string json = JsonSerializer.Serialize(new
        {
            model = new { type = "BPE", unk_token = hasUnknownToken ? "<unk>" : null, fuse_unk = fuse, byte_fallback = false, vocab, merges },
        });
        Tokenizer library = TextTokenizer.Load(new TokenizerFiles(new Dictionary<string, byte[]> { ["tokenizer.json"] = Encoding.UTF8.GetBytes(json) })).Inner;
        LongWordBpe ours = LongWordBpe.Create(vocab, merges, hasUnknownToken ? 0 : -1, fuse);
        AssertSameAsLibrary(library, ours, LongWord(2000, "eee"), compareOffsets: hasUnknownToken);
        AssertSameAsLibrary(library, ours, "tXhe", compareOffsets: hasUnknownToken);
    }

    [Fact]
    public void LongTextsThroughTheTokenizerUseItAndKeepByteFallback()
    {
        TextTokenizer llama = TextTokenizer.LoadFromPath(Shared("models/llama2-tokenizer/tokenizer.json"));
        string word = LongWord(5000, "");
        // The same word cut into short pieces would merge differently, so compare against the library's whole-word result,
        // with its unknown tokens replaced by the byte tokens of the chars they cover.
        IReadOnlyList<EncodedToken> library = llama.Inner.EncodeToTokens("▁" + word, out _, considerPreTokenization: false, considerNormalization: false);
        var expected = new List<int>();
        int unk = llama.TokenToId("<unk>")!.Value;
        foreach (EncodedToken t in library)
        {
            if (t.Id != unk) { expected.Add(t.Id); continue; }
            (int offset, int length) = t.Offset.GetOffsetAndLength(word.Length + 1);
            foreach (byte b in Encoding.UTF8.GetBytes(("▁" + word).Substring(offset, length))) expected.Add(llama.TokenToId($"<0x{b:X2}>")!.Value);
        }
        Assert.Contains(unk, library.Select(t => t.Id));
        Assert.Equal(expected, llama.Encode(word));
    }

    [Fact]
    public void ConcurrentEncodersShareTheWordCachesAndPairTableSafely()
    {
        // A fresh tokenizer, so the pair table is built and the word cache filled while four threads encode.
        TextTokenizer gemma = TextTokenizer.LoadFromPath(Shared("models/gemma-tokenizer/tokenizer.json"));
        string[] texts = [.. Enumerable.Range(0, 8).Select(i => LongWord(400 + 50 * i, "▁") + " " + File.ReadAllText(Shared("DESIGN.md"))[(i * 500)..(i * 500 + 3000)])];
        var results = new int[texts.Length][];
        Parallel.For(0, texts.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => results[i] = [.. gemma.Encode(texts[i])]);
        TextTokenizer fresh = TextTokenizer.LoadFromPath(Shared("models/gemma-tokenizer/tokenizer.json"));
        for (int i = 0; i < texts.Length; i++) Assert.Equal(fresh.Encode(texts[i]), results[i]);
    }
}

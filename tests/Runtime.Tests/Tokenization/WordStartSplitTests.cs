using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Tokenization;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Tokenization;

/// <summary>
/// SentencePiece-style BPE (no pre-tokenizer) is handed to the library word by word, cut before each ▁ that follows
/// another char, where the vocabulary proves no merge can cross; without the cuts the library merges the whole text
/// as one word in quadratic time. These tests check the cuts are made and change no id.
/// </summary>
public class WordStartSplitTests
{
    private const string Paragraph =
        "The quick brown fox jumps over the lazy dog's back, 3 times! Then it rests:  two spaces, a tab\there, "
        + "\"quotes\", (parentheses) and naïve café words; numbers like 1234567 and 3.14159 — and an emoji 🦊.";

    public static IEnumerable<object[]> SentencePieceSources() =>
    [
        ["models/llama2-tokenizer/tokenizer.json"], ["models/llama2-tokenizer/tokenizer.model"],
        ["models/llama2-tokenizer/ggml-vocab-llama-spm.gguf"], ["models/gemma-tokenizer/tokenizer.json"],
        ["fixtures/tokenizers/spm-bpe/tokenizer.model"],
    ];

    private static readonly Dictionary<string, TextTokenizer> Loaded = new();

    private static TextTokenizer Load(string source)
    {
        lock (Loaded)
        {
            if (!Loaded.TryGetValue(source, out TextTokenizer? tok))
                Loaded[source] = tok = TextTokenizer.LoadFromPath(Path.Combine(TokenizerReferenceTests.SharedDir(), source));
            return tok;
        }
    }

    /// <summary>The reference-case texts of the folder the source lives in, plus English prose long enough to hold many words.</summary>
    private static IEnumerable<string> Texts(string source)
    {
        string folder = Path.GetDirectoryName(Path.Combine(TokenizerReferenceTests.SharedDir(), source))!;
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "reference-encodings.json")));
        foreach (JsonElement c in doc.RootElement.GetProperty("cases").EnumerateArray())
            yield return (c.TryGetProperty("input", out JsonElement input) ? input : c.GetProperty("text")).GetString()!;
        yield return Paragraph;
        string design = File.ReadAllText(Path.Combine(TokenizerReferenceTests.SharedDir(), "DESIGN.md"));
        yield return design[..Math.Min(design.Length, 6000)];
    }

    [Theory]
    [MemberData(nameof(SentencePieceSources))]
    public void CutsBeforeWordStartsAreMadeAndChangeNoId(string source)
    {
        Tokenizer inner = Load(source).Inner;
        Assert.Equal(new[] { (0, 6), (6, 7), (13, 4) }, inner.PreTokenizer!.PreTokenize("▁hello▁▁world▁end").ToArray());
        foreach (string text in Texts(source))
        {
            // Through the library directly: the same normalized text merged whole and merged word by word.
            IReadOnlyList<int> whole = inner.EncodeToIds(text, considerPreTokenization: false, considerNormalization: true);
            IReadOnlyList<int> byWord = inner.EncodeToIds(text, considerPreTokenization: true, considerNormalization: true);
            Assert.Equal(whole, byWord);
        }
    }

    [Theory]
    [MemberData(nameof(SentencePieceSources))]
    public void RepeatedTextEncodesToRepeatedIds(string source)
    {
        TextTokenizer tok = Load(source);
        // Each copy starts with a space, so it begins a word wherever it stands: its ids do not depend on what precedes it.
        string start = "Start.", copy = " " + Paragraph.Replace("\t", " ");
        int[] head = tok.Encode(start).ToArray();
        int[] one = tok.Encode(start + copy).ToArray();
        Assert.Equal(head, one[..head.Length]);
        int[] tail = one[head.Length..];
        const int copies = 4096; // about 0.8 MB: seconds to minutes if the text were merged as one word
        int[] many = tok.Encode(start + string.Concat(Enumerable.Repeat(copy, copies))).ToArray();
        Assert.Equal(head.Length + copies * tail.Length, many.Length);
        Assert.Equal(head, many[..head.Length]);
        for (int k = 0; k < copies; k++)
            Assert.True(tail.AsSpan().SequenceEqual(many.AsSpan(head.Length + k * tail.Length, tail.Length)), $"copy {k} differs");

        string prepared = "▁" + string.Concat(Enumerable.Repeat(copy, 64)).Replace(' ', '▁');
        int longest = tok.Inner.PreTokenizer!.PreTokenize(prepared).Max(p => p.Length);
        Assert.True(longest <= 16, $"the longest piece merged as one word has {longest} chars");
    }

    private static TextTokenizer Synthetic(bool crossingMerge)
    {
        string merges = crossingMerge ? """["▁ b", "a ▁b"]""" : """["▁ b"]""";
        string json = $$$"""
            {"normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
             "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": false,
                       "vocab": {"<unk>": 0, "a": 1, "b": 2, "▁": 3, "▁b": 4, "a▁b": 5}, "merges": {{{merges}}}}}
            """;
        return TextTokenizer.Load(new TokenizerFiles(new Dictionary<string, byte[]> { ["tokenizer.json"] = Encoding.UTF8.GetBytes(json) }));
    }

    [Fact]
    public void AMergeAcrossAWordStartKeepsTheTextWhole()
    {
        TextTokenizer crossing = Synthetic(crossingMerge: true);
        Assert.Single(crossing.Inner.PreTokenizer!.PreTokenize("a▁b"));
        Assert.Equal([5, 5], crossing.Encode("a ba b"));

        TextTokenizer plain = Synthetic(crossingMerge: false);
        Assert.Equal(2, plain.Inner.PreTokenizer!.PreTokenize("a▁b").Count());
        Assert.Equal([1, 4, 1, 4], plain.Encode("a ba b"));
    }
}

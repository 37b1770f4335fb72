using System.Text;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Tokenization;

namespace OnDeviceLlm.Connector.Tests;

public sealed class TextStreamTests
{
    private static readonly TextTokenizer ByteLevel = TextTokenizer.Load(new TokenizerFiles(
        new Dictionary<string, byte[]> { ["tokenizer.json"] = TestModels.SmallByteLevelTokenizer(512) }));

    [Theory]
    [InlineData("naïve café — 日本語 😀 done")]
    [InlineData("😀😀 ok")]
    [InlineData("plain ascii only")]
    public void Pieces_are_whole_characters_and_concatenate_to_the_decoded_text(string text)
    {
        var ids = ByteLevel.Encode(text);
        // The small vocabulary has no multi-byte merges, so these characters really are split across tokens.
        Assert.True(text.All(char.IsAscii) || ids.Count > Encoding.UTF8.GetByteCount(text.Where(c => !char.IsAscii(c)).ToArray()) / 2);
        var stream = new TextStream(ByteLevel, []);
        var pieces = new List<string>();
        foreach (int id in ids) pieces.Add(stream.Push(id));
        pieces.Add(stream.Flush());

        Assert.Equal(text, string.Concat(pieces));
        Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
        Assert.All(pieces, p => Assert.True(ChatClientTests.IsWellFormed(p)));
    }

    [Fact]
    public void An_incomplete_character_at_the_end_is_flushed_as_a_replacement_character()
    {
        var ids = ByteLevel.Encode("a😀");
        var stream = new TextStream(ByteLevel, []);
        var pieces = new StringBuilder();
        foreach (int id in ids.Take(ids.Count - 1)) pieces.Append(stream.Push(id));
        Assert.Equal("a", pieces.ToString());
        Assert.Equal(ByteLevel.Decode(ids.Take(ids.Count - 1).ToArray())[1..], stream.Flush());
    }

    [Theory]
    [InlineData("Hello world. User: next", "User:", "Hello world. ")]
    [InlineData("abcabd", "abd", "abc")]
    [InlineData("no stop here", "zzz", "no stop here")]
    [InlineData("stop at start", "stop", "")]
    public void Stop_sequences_cut_the_text_and_nothing_of_them_is_emitted(string text, string stop, string expected)
    {
        var stream = new TextStream(ByteLevel, [stop]);
        var pieces = new List<string>();
        foreach (int id in ByteLevel.Encode(text))
        {
            pieces.Add(stream.Push(id));
            if (stream.Stopped) break;
        }
        pieces.Add(stream.Flush());
        Assert.Equal(expected, string.Concat(pieces));
        Assert.Equal(expected.Length < text.Length, stream.Stopped);
        // A stop sequence's first characters are held back, never emitted and then retracted.
        Assert.All(pieces, p => Assert.DoesNotContain(stop, p));
    }
}

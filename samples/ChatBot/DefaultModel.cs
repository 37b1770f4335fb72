using System.Text.Json.Nodes;
using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Samples.ChatBot;

/// <summary>
/// The model used when none is given: stories260K from the shared folder beside the repository when it is there;
/// otherwise a tiny random-weight Llama with a byte-level tokenizer, built on the spot, which needs nothing but this
/// program and produces noise: it shows the machinery (streaming, timings, commands), not a conversation.
/// </summary>
internal static class DefaultModel
{
    public static string? FindStories()
    {
        foreach (string start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "shared", "models", "stories260K", "stories260K.gguf");
                if (File.Exists(candidate)) return candidate;
            }
        }
        return null;
    }

    /// <summary>Writes the random-weight demo model (about 1 MB) to <paramref name="path"/> unless it is there already.</summary>
    public static string CreateSynthetic(string path)
    {
        if (File.Exists(path)) return path;
        var config = new ModelConfig
        {
            Architecture = "llama", VocabSize = 257, HiddenSize = 64, NumLayers = 2, NumHeads = 4, NumKvHeads = 2, HeadDim = 16,
            IntermediateSize = 128, ContextLength = 1024, RotaryDim = 16, AttentionScale = 0.25f,
        };
        var random = new Random(1);
        var tensors = TensorNames.Expected(config).Where(t => t.Required).Select(t => new TensorToWrite(t.Name, TensorType.F32, t.Shape, s =>
        {
            var values = new float[t.Shape.Aggregate(1L, (a, b) => a * b)];
            bool norm = t.Name.Contains("norm", StringComparison.Ordinal);
            for (int i = 0; i < values.Length; i++) values[i] = norm ? 1f : (random.NextSingle() - 0.5f) * 0.5f;
            s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        })).ToList();
        var tokenizer = new TokenizerFiles(new Dictionary<string, byte[]> { ["tokenizer.json"] = ByteTokenizerJson() });
        ModelWriter.Write(path, config, new SpecialTokens { Eos = [256] }, tokenizer,
            new Provenance("chatbot-sample:random-llama", "ChatBot sample", "f32"), tensors);
        return path;
    }

    /// <summary>A byte-level BPE tokenizer.json with one token per byte (GPT-2's byte-to-character alphabet), no merges, and EOS 256.</summary>
    private static byte[] ByteTokenizerJson()
    {
        var printable = new List<int>();
        for (int b = '!'; b <= '~'; b++) printable.Add(b);
        for (int b = 0xA1; b <= 0xAC; b++) printable.Add(b);
        for (int b = 0xAE; b <= 0xFF; b++) printable.Add(b);
        var vocab = new JsonObject();
        int extra = 0;
        for (int b = 0; b < 256; b++)
        {
            int symbol = printable.Contains(b) ? b : 256 + extra++;
            vocab[((char)symbol).ToString()] = b;
        }
        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(new JsonObject
            {
                ["id"] = 256, ["content"] = "<|endoftext|>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = false, ["special"] = true,
            }),
            ["normalizer"] = null,
            ["pre_tokenizer"] = byteLevel.DeepClone(),
            ["post_processor"] = null,
            ["decoder"] = byteLevel.DeepClone(),
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = new JsonArray() },
        };
        return System.Text.Encoding.UTF8.GetBytes(root.ToJsonString());
    }
}

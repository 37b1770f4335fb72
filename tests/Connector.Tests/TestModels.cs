using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Tokenization;

namespace OnDeviceLlm.Connector.Tests;

/// <summary>
/// Models for the connector tests. The fixtures in ../shared have no tokenizer, so the chat model is a
/// random-weight Llama (the fixture's shape) whose vocabulary is exactly the fixture byte-level BPE tokenizer's
/// 1001 tokens, written once per test run as an .odlm with that tokenizer embedded. Byte-level tokens make
/// the random model emit partial UTF-8 characters, which is what the streaming tests need.
/// </summary>
public static class TestModels
{
    public static string ScratchRoot { get; } = CreateScratch();

    public static string Shared { get; } = FindShared();

    public static string ByteLevelTokenizer => Path.Combine(Shared, "fixtures", "tokenizers", "bytelevel-bpe", "tokenizer.json");

    private static readonly Lazy<string> ChatModelPath = new(() => WriteChatModel(Path.Combine(ScratchRoot, "chat-llama.odlm"), chatTemplate: null));

    /// <summary>The path of the synthetic chat model (written on first use).</summary>
    public static string ChatModel => ChatModelPath.Value;

    public static LanguageModel LoadChatModel() => LanguageModel.Load(ChatModel);

    /// <summary>Writes a random-weight Llama with the byte-level tokenizer; EOS is &lt;|endoftext|&gt; (id 0).</summary>
    public static string WriteChatModel(string path, string? chatTemplate, int seed = 7)
    {
        var tokenizerFiles = new TokenizerFiles(new Dictionary<string, byte[]> { ["tokenizer.json"] = SmallByteLevelTokenizer(512) });
        int vocab = TextTokenizer.Load(tokenizerFiles).VocabSize;
        var config = new ModelConfig
        {
            Architecture = "llama", VocabSize = vocab, HiddenSize = 64, NumLayers = 2, NumHeads = 4, NumKvHeads = 2, HeadDim = 16,
            IntermediateSize = 128, ContextLength = 512, Norm = NormKind.RmsNorm, NormEps = 1e-5f, Activation = Activation.Silu,
            FeedForward = FeedForwardKind.Gated, Layout = BlockLayout.Sequential, Positions = PositionEncoding.Rope, RotaryDim = 16,
            AttentionScale = 0.25f,
        };
        var special = new SpecialTokens { Eos = [0], ChatTemplate = chatTemplate };
        var random = new Random(seed);
        var tensors = new List<TensorToWrite>();
        foreach (var (name, shape, required) in TensorNames.Expected(config))
        {
            if (!required) continue;
            long count = shape.Aggregate(1L, (a, b) => a * b);
            var data = new byte[count * sizeof(float)];
            var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(data.AsSpan());
            bool norm = name.Contains("norm", StringComparison.Ordinal);
            // Spread chosen so the logits have a standard deviation of about 2: sampled text varies, greedy text is stable.
            for (int i = 0; i < values.Length; i++) values[i] = norm ? 1f : (random.NextSingle() - 0.5f) * 0.9f;
            tensors.Add(new TensorToWrite(name, TensorType.F32, shape, s => s.Write(data)));
        }
        ModelWriter.Write(path, config, special, tokenizerFiles, new Provenance("test:random-llama-bytelevel", "tests", "f32"), tensors);
        return path;
    }

    /// <summary>
    /// The fixture byte-level BPE cut to its first <paramref name="vocab"/> ids (the 256 byte symbols, the two
    /// special tokens and the earliest merges), still a complete tokenizer: every text encodes, since every byte
    /// has a token. Kept small because .odlm headers above about 20 KB currently fail to verify when read back
    /// (a runtime bug reported separately).
    /// </summary>
    public static byte[] SmallByteLevelTokenizer(int vocab)
    {
        var root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllBytes(ByteLevelTokenizer))!.AsObject();
        var model = root["model"]!.AsObject();
        var kept = model["vocab"]!.AsObject().Where(p => (int)p.Value! < vocab).ToDictionary(p => p.Key, p => (int)p.Value!);
        var merges = new System.Text.Json.Nodes.JsonArray();
        foreach (var m in model["merges"]!.AsArray())
        {
            string a = (string)m![0]!, b = (string)m[1]!;
            if (kept.ContainsKey(a) && kept.ContainsKey(b) && kept.ContainsKey(a + b)) merges.Add(new System.Text.Json.Nodes.JsonArray(a, b));
        }
        var vocabNode = new System.Text.Json.Nodes.JsonObject();
        foreach (var (token, id) in kept.OrderBy(p => p.Value)) vocabNode[token] = id;
        model["vocab"] = vocabNode;
        model["merges"] = merges;
        var added = new System.Text.Json.Nodes.JsonArray();
        foreach (var t in root["added_tokens"]!.AsArray())
            if ((int)t!["id"]! < vocab) added.Add(t.DeepClone());
        root["added_tokens"] = added;
        return System.Text.Encoding.UTF8.GetBytes(root.ToJsonString());
    }

    private static string CreateScratch()
    {
        string root = Path.Combine(Path.GetTempPath(), "odllm-connector-tests-" + Environment.ProcessId);
        Directory.CreateDirectory(root);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(root, true); } catch (IOException) { } };
        return root;
    }

    private static string FindShared()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Connector.sln"))) return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared"));
        throw new InvalidOperationException("Connector.sln not found above " + AppContext.BaseDirectory);
    }
}

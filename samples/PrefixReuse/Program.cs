using System.Diagnostics;
using Microsoft.Extensions.AI;
using OnDeviceLlm.Connector;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Model;

// Time to first token of turn 5 of a conversation, with and without KV-cache reuse: each turn re-sends the history
// (or continues by ConversationId), so without reuse every turn evaluates the whole conversation again.
// Model: random weights in a Llama shape near the 110M class (hidden 768, 12 layers, 12 heads, FFN 2048), with
// the byte-level fixture tokenizer from ../shared cut to 512 tokens; written once to the temp folder (~300 MB).
// Usage: dotnet run -c Release --project samples/PrefixReuse [-- runs]
int runs = args.Length > 0 && int.TryParse(args[0], out int r) && r > 0 ? r : 3;
string path = Path.Combine(Path.GetTempPath(), "odllm-prefix-reuse-sample.odlm");
if (!File.Exists(path)) Write(path, FindTokenizer());
using var model = LanguageModel.Load(path);
Console.WriteLine($"kernels {model.Kernels.Name}, {Environment.ProcessorCount} logical CPUs");
var results = new Dictionary<string, List<double>>();
for (int run = 0; run < runs; run++)
foreach (var mode in new[] { "no reuse", "reuse (full history)", "reuse (ConversationId)" })
{
    using var client = new OnDeviceChatClient(model, new OnDeviceChatClientOptions { ReusePrefix = mode != "no reuse" });
    var history = new List<ChatMessage> { new(ChatRole.System, "You are a helpful assistant who answers in detail about the history of computing machines.") };
    string? conversation = null;
    ChatResponse? last = null;
    for (int turn = 1; turn <= 5; turn++)
    {
        var user = new ChatMessage(ChatRole.User, $"Question {turn}: tell me about machine number {turn} and how it changed what came after it, with dates.");
        history.Add(user);
        var options = new ChatOptions { Temperature = 0f, MaxOutputTokens = 48, ConversationId = mode.Contains("Conversation") ? conversation : null };
        last = await client.GetResponseAsync(mode.Contains("Conversation") && conversation is not null ? [user] : history, options);
        conversation = last.ConversationId;
        history.AddMessages(last);
    }
    double ttft = (double)last!.AdditionalProperties![OnDeviceChatClient.TimeToFirstTokenKey]!;
    (results.TryGetValue(mode, out var l) ? l : results[mode] = []).Add(ttft);
    Console.WriteLine($"run {run} {mode}: turn 5 prompt {last.Usage!.InputTokenCount} tokens, {last.Usage.CachedInputTokenCount} reused, TTFT {ttft:F1} ms");
}
foreach (var (mode, l) in results) Console.WriteLine($"median {mode}: {l.Order().ElementAt(l.Count / 2):F1} ms");

static string FindTokenizer()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        string candidate = Path.Combine(dir.FullName, "shared", "fixtures", "tokenizers", "bytelevel-bpe", "tokenizer.json");
        if (File.Exists(candidate)) return candidate;
    }
    throw new FileNotFoundException("../shared/fixtures/tokenizers/bytelevel-bpe/tokenizer.json was not found beside the repository.");
}

static void Write(string path, string tokenizer)
{
    var root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllBytes(tokenizer))!;
    var tok = new TokenizerFiles(new Dictionary<string, byte[]> { ["tokenizer.json"] = System.Text.Encoding.UTF8.GetBytes(Small(root)) });
    var config = new ModelConfig { Architecture = "llama", VocabSize = 512, HiddenSize = 768, NumLayers = 12, NumHeads = 12, NumKvHeads = 12, HeadDim = 64,
        IntermediateSize = 2048, ContextLength = 2048, RotaryDim = 64, AttentionScale = 0.125f };
    var rnd = new Random(1);
    var tensors = TensorNames.Expected(config).Where(t => t.Required).Select(t => new TensorToWrite(t.Name, TensorType.F32, t.Shape, s =>
    {
        long n = t.Shape.Aggregate(1L, (a, b) => a * b);
        var buf = new float[n];
        bool norm = t.Name.Contains("norm");
        for (long i = 0; i < n; i++) buf[i] = norm ? 1f : (rnd.NextSingle() - 0.5f) * 0.1f;
        s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(buf.AsSpan()));
    })).ToList();
    ModelWriter.Write(path, config, new SpecialTokens { Eos = [0] }, tok, new Provenance("bench", "bench", "f32"), tensors);
}
// The fixture tokenizer cut to its first 512 ids (bytes, specials, earliest merges), which keeps the file header small.
static string Small(System.Text.Json.Nodes.JsonNode root)
{
    var model = root["model"]!.AsObject();
    var kept = model["vocab"]!.AsObject().Where(p => (int)p.Value! < 512).ToDictionary(p => p.Key, p => (int)p.Value!);
    var merges = new System.Text.Json.Nodes.JsonArray();
    foreach (var m in model["merges"]!.AsArray()) { string a = (string)m![0]!, b = (string)m[1]!; if (kept.ContainsKey(a) && kept.ContainsKey(b) && kept.ContainsKey(a + b)) merges.Add(new System.Text.Json.Nodes.JsonArray(a, b)); }
    var v = new System.Text.Json.Nodes.JsonObject(); foreach (var (k, id) in kept.OrderBy(p => p.Value)) v[k] = id;
    model["vocab"] = v; model["merges"] = merges;
    var added = new System.Text.Json.Nodes.JsonArray(); foreach (var t in root["added_tokens"]!.AsArray()) if ((int)t!["id"]! < 512) added.Add(t.DeepClone());
    root["added_tokens"] = added;
    return root.ToJsonString();
}

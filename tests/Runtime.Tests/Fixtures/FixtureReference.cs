using System.Text.Json;

namespace OnDeviceLlm.Runtime.Tests.Fixtures;

/// <summary>reference.json of a fixture model folder: what Hugging Face transformers computed.</summary>
public sealed class FixtureReference
{
    public required string Folder { get; init; }
    public required int[] InputIds { get; init; }
    public required float[] LogitsLast { get; init; }
    public required int LogitsMidPosition { get; init; }
    public required float[] LogitsMid { get; init; }
    public required int[] ArgmaxPerPosition { get; init; }
    public required int[] GreedyNewTokens { get; init; }
    public required int[] FullSequenceIds { get; init; }
    public required float[] FullSequenceLogitsLast { get; init; }
    public required int[] FullSequenceArgmax { get; init; }
    public required float[] DecoderInput { get; init; }
    public required float[][] LayerOutputs { get; init; }

    /// <summary>Every fixture folder (each holding reference.json), by name; the unpublished set is laid out the same way.</summary>
    public static IEnumerable<string> Names() =>
        Directory.GetDirectories(TestPaths.Fixtures)
            .Where(d => File.Exists(Path.Combine(d, "reference.json")))
            .Select(Path.GetFileName).Order()!;

    public static IEnumerable<object[]> Cases() => Names().Select(n => new object[] { n });

    private static readonly Dictionary<string, FixtureReference> Cache = new();

    public static FixtureReference Load(string name)
    {
        lock (Cache)
        {
            if (Cache.TryGetValue(name, out var cached)) return cached;
            string folder = Path.Combine(TestPaths.Fixtures, name);
            using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "reference.json")));
            var r = doc.RootElement;
            int[] Ints(string key) => r.GetProperty(key).EnumerateArray().Select(e => e.GetInt32()).ToArray();
            float[] Floats(JsonElement e) => e.EnumerateArray().Select(x => (float)x.GetDouble()).ToArray();
            var act = r.GetProperty("activations_last_prompt_position");
            var reference = new FixtureReference
            {
                Folder = folder,
                InputIds = Ints("input_ids"),
                LogitsLast = Floats(r.GetProperty("logits_last")),
                LogitsMidPosition = r.GetProperty("logits_mid_position").GetInt32(),
                LogitsMid = Floats(r.GetProperty("logits_mid")),
                ArgmaxPerPosition = Ints("argmax_per_position"),
                GreedyNewTokens = Ints("greedy_new_tokens"),
                FullSequenceIds = Ints("full_sequence_ids"),
                FullSequenceLogitsLast = Floats(r.GetProperty("full_sequence_logits_last")),
                FullSequenceArgmax = Ints("full_sequence_argmax"),
                DecoderInput = Floats(act.GetProperty("decoder_input")),
                LayerOutputs = act.GetProperty("layer_outputs").EnumerateArray().Select(Floats).ToArray(),
            };
            Cache[name] = reference;
            return reference;
        }
    }
}

using System.Text.Json;
using System.Text.Json.Nodes;

namespace OnDeviceLlm.Runtime.Import.HuggingFace;

/// <summary>
/// Typed reads of a Hugging Face config.json. Accepts both the transformers 5.x layout
/// (<c>rope_parameters</c>, <c>dtype</c>) and the 4.x one (top-level <c>rope_theta</c>,
/// <c>partial_rotary_factor</c>, <c>torch_dtype</c>), and names the file and key in every error.
/// </summary>
public sealed class HfConfig
{
    private readonly JsonObject _root;

    public HfConfig(string path, JsonObject root) { Path = path; _root = root; }

    public string Path { get; }

    public static HfConfig Load(string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException(path, "config.json is missing.");
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) is JsonObject o
                ? new HfConfig(path, o)
                : throw new ModelFormatException(path, "config.json is not a JSON object.");
        }
        catch (JsonException e) { throw new ModelFormatException(path, $"config.json is not valid JSON ({e.Message}).", e); }
    }

    public bool Has(string key) => _root[key] is not null;

    public string ModelType => String("model_type") ?? throw Error("has no \"model_type\".");

    public string? Architecture => _root["architectures"] is JsonArray { Count: > 0 } a ? a[0]?.GetValue<string>() : null;

    public string? String(string key) => Get(key, n => n.GetValue<string>());

    public int Int(string key) => Int(key, null) ?? throw Error($"has no \"{key}\".");
    public int? Int(string key, int? fallback) => Get(key, n => (int?)checked((int)n.GetValue<double>())) ?? fallback;

    public float Float(string key) => Float(key, null) ?? throw Error($"has no \"{key}\".");
    public float? Float(string key, float? fallback) => Get(key, n => (float?)n.GetValue<double>()) ?? fallback;

    public bool Bool(string key, bool fallback) => Get(key, n => (bool?)n.GetValue<bool>()) ?? fallback;

    public IReadOnlyList<string>? StringList(string key) =>
        _root[key] is JsonArray a ? a.Select(n => n?.GetValue<string>() ?? throw Error($"has a null entry in \"{key}\".")).ToList() : null;

    /// <summary>Token ids given either as one int or a list (eos_token_id does both).</summary>
    public IReadOnlyList<int> IdList(string key) => _root[key] switch
    {
        null => [],
        JsonArray a => a.Where(n => n is not null).Select(n => checked((int)n!.GetValue<double>())).ToList(),
        _ => [Get(key, x => (int?)checked((int)x.GetValue<double>()))!.Value],
    };

    /// <summary>RoPE θ from rope_parameters (5.x), else top-level rope_theta (4.x), else the default.</summary>
    public float RopeTheta(float fallback = 10000f) =>
        RopeParameter("rope_theta") ?? Float("rope_theta", null) ?? fallback;

    public float PartialRotaryFactor(float fallback) =>
        RopeParameter("partial_rotary_factor") ?? Float("partial_rotary_factor", null) ?? fallback;

    /// <summary>Rejects RoPE scaling schemes the forward pass does not implement, naming them.</summary>
    public void RequireDefaultRope()
    {
        string? type = (_root["rope_parameters"] as JsonObject)?["rope_type"]?.GetValue<string>()
                       ?? (_root["rope_scaling"] as JsonObject)?["rope_type"]?.GetValue<string>()
                       ?? (_root["rope_scaling"] as JsonObject)?["type"]?.GetValue<string>();
        if (type is not null && type != "default")
            throw new UnsupportedModelException($"{Path}: RoPE scaling \"{type}\" is not supported yet (only the default rotary embedding is).");
    }

    /// <summary>Fails when a config key holds a value the runtime does not implement.</summary>
    public void Reject(string key, Func<JsonNode, bool> isUnsupported, string why)
    {
        var node = _root[key];
        if (node is not null && isUnsupported(node))
            throw new UnsupportedModelException($"{Path}: config option \"{key}\" = {node.ToJsonString()} is not supported ({why}).");
    }

    private float? RopeParameter(string key) =>
        (_root["rope_parameters"] as JsonObject)?[key] is JsonNode n ? (float)n.GetValue<double>() : null;

    private T? Get<T>(string key, Func<JsonNode, T?> read)
    {
        var node = _root[key];
        if (node is null) return default;
        try { return read(node); }
        catch (Exception e) when (e is InvalidOperationException or FormatException or OverflowException)
        {
            throw new ModelFormatException(Path, $"config key \"{key}\" has an unexpected value {node.ToJsonString()}.", e);
        }
    }

    private ModelFormatException Error(string problem) => new(Path, $"config.json {problem}");
}

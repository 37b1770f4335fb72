using System.Text.Json;

namespace OnDeviceLlm.Runtime.Tokenization;

/// <summary>What tokenizer_config.json, special_tokens_map.json and added_tokens.json say about special tokens.</summary>
internal sealed class TokenizerConfig
{
    public bool? AddBos { get; private set; }
    public bool? AddEos { get; private set; }
    /// <summary>transformers' clean_up_tokenization_spaces: on when a tokenizer_config.json is present and does not turn it off.</summary>
    public bool CleanUpTokenizationSpaces { get; private set; }
    public string? BosToken { get; private set; }
    public string? EosToken { get; private set; }
    /// <summary>Contents named as special (bos/eos/unk/pad/additional_special_tokens).</summary>
    public HashSet<string> SpecialContents { get; } = new(StringComparer.Ordinal);
    /// <summary>Added tokens declared by added_tokens_decoder or added_tokens.json.</summary>
    public List<AddedToken> AddedTokens { get; } = [];

    public static TokenizerConfig Read(IReadOnlyDictionary<string, byte[]> files)
    {
        var config = new TokenizerConfig();
        if (files.TryGetValue("special_tokens_map.json", out byte[]? map))
            Parse("special_tokens_map.json", map, root => config.ReadSpecialTokens(root));
        if (files.TryGetValue("tokenizer_config.json", out byte[]? cfg))
            Parse("tokenizer_config.json", cfg, root =>
            {
                config.ReadSpecialTokens(root);
                if (root.TryGetProperty("add_bos_token", out JsonElement b) && b.ValueKind is JsonValueKind.True or JsonValueKind.False) config.AddBos = b.GetBoolean();
                config.CleanUpTokenizationSpaces = !(root.TryGetProperty("clean_up_tokenization_spaces", out JsonElement c) && c.ValueKind == JsonValueKind.False);
                if (root.TryGetProperty("add_eos_token", out JsonElement e) && e.ValueKind is JsonValueKind.True or JsonValueKind.False) config.AddEos = e.GetBoolean();
                if (root.TryGetProperty("added_tokens_decoder", out JsonElement decoder) && decoder.ValueKind == JsonValueKind.Object)
                    foreach (JsonProperty p in decoder.EnumerateObject())
                    {
                        if (!int.TryParse(p.Name, out int id)) throw new TokenizerException($"tokenizer_config.json: added_tokens_decoder key '{p.Name}' is not a token id.");
                        config.AddedTokens.Add(new AddedToken(id, p.Value.GetProperty("content").GetString()!,
                            Flag(p.Value, "special"), Flag(p.Value, "normalized"), Flag(p.Value, "lstrip"), Flag(p.Value, "rstrip")));
                    }
            });
        if (files.TryGetValue("added_tokens.json", out byte[]? added))
            Parse("added_tokens.json", added, root =>
            {
                foreach (JsonProperty p in root.EnumerateObject())
                    if (!config.AddedTokens.Exists(t => t.Id == p.Value.GetInt32()))
                        config.AddedTokens.Add(new AddedToken(p.Value.GetInt32(), p.Name, config.SpecialContents.Contains(p.Name)));
            });
        return config;
    }

    private void ReadSpecialTokens(JsonElement root)
    {
        foreach (string key in new[] { "bos_token", "eos_token", "unk_token", "pad_token" })
        {
            if (!root.TryGetProperty(key, out JsonElement v) || TokenContent(v) is not string content) continue;
            SpecialContents.Add(content);
            if (key == "bos_token") BosToken = content;
            if (key == "eos_token") EosToken = content;
        }
        if (root.TryGetProperty("additional_special_tokens", out JsonElement extra) && extra.ValueKind == JsonValueKind.Array)
            foreach (JsonElement v in extra.EnumerateArray())
                if (TokenContent(v) is string content) SpecialContents.Add(content);
    }

    private static string? TokenContent(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => v.GetString(),
        JsonValueKind.Object when v.TryGetProperty("content", out JsonElement c) => c.GetString(),
        _ => null,
    };

    private static bool Flag(JsonElement e, string name) => e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.True;

    /// <summary>Parses a JSON file, turning any syntax or shape error into a TokenizerException naming the file.</summary>
    public static void Parse(string fileName, byte[] bytes, Action<JsonElement> read)
    {
        try
        {
            using JsonDocument doc = JsonDocument.Parse(bytes);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new TokenizerException($"{fileName}: the top level is not a JSON object.");
            read(doc.RootElement);
        }
        catch (JsonException ex) { throw new TokenizerException($"{fileName}: malformed JSON ({ex.Message}).", ex); }
        catch (Exception ex) when (ex is InvalidOperationException or KeyNotFoundException or FormatException)
        {
            throw new TokenizerException($"{fileName}: unexpected structure ({ex.Message}).", ex);
        }
    }
}

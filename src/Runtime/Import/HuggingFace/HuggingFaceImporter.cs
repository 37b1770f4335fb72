using System.Text.Json;
using System.Text.Json.Nodes;
using OnDeviceLlm.Runtime.Architectures;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Tokenization;

namespace OnDeviceLlm.Runtime.Import.HuggingFace;

/// <summary>Reads a Hugging Face model folder: config.json, safetensors (one file or shards), tokenizer and generation configs.</summary>
public static class HuggingFaceImporter
{
    public static bool IsModelFolder(string path) => Directory.Exists(path) && File.Exists(Path.Combine(path, "config.json"));

    public static ImportedModel Import(string folder)
    {
        if (!Directory.Exists(folder)) throw new ModelFormatException(folder, "is not a folder.");
        var hf = HfConfig.Load(Path.Combine(folder, "config.json"));
        var architecture = Architecture.ForModelType(hf.ModelType, hf.Path);
        var config = architecture.ReadConfig(hf);

        var checkpoint = SafeTensorsCheckpoint.Open(folder);
        try
        {
            var tensors = MapTensors(folder, architecture, config, checkpoint);
            var tokenizer = HasTokenizer(folder) ? TextTokenizer.ReadFiles(folder) : TokenizerFiles.None;
            var special = ReadSpecialTokens(folder, hf, config, tokenizer);
            return new ImportedModel(Path.GetFullPath(folder), config, special, tokenizer, tensors, new CheckpointTensors(checkpoint));
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    private static IReadOnlyList<ImportedTensor> MapTensors(string folder, Architecture architecture, ModelConfig config, SafeTensorsCheckpoint checkpoint)
    {
        var expected = TensorNames.Expected(config).ToDictionary(e => e.Name);
        var used = new HashSet<string>();
        var result = new List<ImportedTensor>();
        foreach (var mapping in architecture.MapTensors(config, checkpoint.Contains))
        {
            if (!expected.TryGetValue(mapping.Name, out var e))
                throw new UnsupportedModelException($"{folder}: checkpoint tensor {mapping.Pieces[0].Source} maps to {mapping.Name}, which a {config.Architecture} model with this config does not use.");
            TensorType? type = null;
            long elements = 0, rowElements = e.Shape.Length == 1 ? 1 : e.Shape[1..].Aggregate(1L, (a, b) => a * b);
            foreach (var piece in mapping.Pieces)
            {
                var source = checkpoint.Get(piece.Source);
                used.Add(piece.Source);
                type ??= source.Type;
                if (source.Type != type)
                    throw new ModelFormatException(folder, $"tensor {mapping.Name} mixes {type} and {source.Type} sources.");
                long sourceRowElements = source.Shape.Length <= 1 ? 1 : source.Shape[1..].Aggregate(1L, (a, b) => a * b);
                long sourceRows = source.Shape.Length == 0 ? 1 : source.Shape[0];
                long count = piece.Count < 0 ? sourceRows : piece.Count;
                // Pieces are whole source rows; a target row may span several (per-head norms stacked into a matrix).
                if ((count * sourceRowElements) % rowElements != 0 || piece.Start + count > sourceRows)
                    throw new ModelFormatException(folder, $"tensor {piece.Source} has shape [{string.Join(", ", source.Shape)}], which does not fit {mapping.Name} [{string.Join(", ", e.Shape)}] for this config.");
                elements += count * sourceRowElements;
            }
            long expectedElements = e.Shape.Aggregate(1L, (a, b) => a * b);
            if (elements != expectedElements)
                throw new ModelFormatException(folder, $"tensor {mapping.Name} should have shape [{string.Join(", ", e.Shape)}] but its checkpoint tensors hold {elements} values.");
            result.Add(new ImportedTensor(mapping.Name, e.Shape, type!.Value, mapping.Pieces));
        }

        foreach (var name in checkpoint.Names)
        {
            // Rotary frequency buffers are recomputed from the config.
            if (!used.Contains(name) && !name.EndsWith(".inv_freq", StringComparison.Ordinal))
                throw new UnsupportedModelException($"{folder}: checkpoint tensor {name} is not used by the {config.Architecture} architecture (an unsupported config option?).");
        }
        var mapped = result.Select(t => t.Name).ToHashSet();
        foreach (var (name, _, required) in expected.Values)
        {
            if (required && !mapped.Contains(name))
                throw new ModelFormatException(folder, $"the checkpoint lacks the tensor that becomes {name}.");
        }
        return result;
    }

    private static bool HasTokenizer(string folder) =>
        File.Exists(Path.Combine(folder, "tokenizer.json")) || File.Exists(Path.Combine(folder, "tokenizer.model"))
        || File.Exists(Path.Combine(folder, "vocab.json"));

    /// <summary>
    /// BOS/EOS/pad from config.json, overridden by generation_config.json (which may list several EOS ids),
    /// add_bos_token and chat_template from tokenizer_config.json.
    /// </summary>
    private static SpecialTokens ReadSpecialTokens(string folder, HfConfig hf, ModelConfig config, TokenizerFiles tokenizer)
    {
        int? bos = hf.IdList("bos_token_id") is [var b, ..] ? b : null;
        var eos = hf.IdList("eos_token_id");
        int? pad = hf.IdList("pad_token_id") is [var p, ..] ? p : null;

        string generationPath = Path.Combine(folder, "generation_config.json");
        if (File.Exists(generationPath))
        {
            var generation = HfConfig.Load(generationPath);
            if (generation.IdList("bos_token_id") is [var gb, ..]) bos = gb;
            if (generation.IdList("eos_token_id") is { Count: > 0 } ge) eos = ge;
            if (generation.IdList("pad_token_id") is [var gp, ..]) pad = gp;
        }

        // Llama- and Gemma-family tokenizers prepend BOS by default; the byte-level BPE families do not.
        bool addBos = config.Architecture is "llama" or "gemma" or "gemma2";
        string? chatTemplate = null;
        if (tokenizer.Files.TryGetValue("tokenizer_config.json", out var tokenizerConfigBytes))
        {
            try
            {
                var root = JsonNode.Parse(tokenizerConfigBytes) as JsonObject;
                if (root?["add_bos_token"] is JsonValue add && add.TryGetValue<bool>(out var a)) addBos = a;
                chatTemplate = root?["chat_template"] switch
                {
                    JsonValue v when v.TryGetValue<string>(out var s) => s,
                    // Newer configs list named templates; the one named "default" is what apply_chat_template uses.
                    JsonArray list => list.OfType<JsonObject>().FirstOrDefault(t => (string?)t["name"] == "default")?["template"]?.GetValue<string>(),
                    _ => null,
                };
            }
            catch (JsonException e)
            {
                throw new TokenizerException($"{Path.Combine(folder, "tokenizer_config.json")} is not valid JSON ({e.Message}).", e);
            }
        }
        return new SpecialTokens { Bos = bos, Eos = eos, Pad = pad, AddBos = addBos && bos is not null, ChatTemplate = chatTemplate };
    }

    private sealed class CheckpointTensors(SafeTensorsCheckpoint checkpoint) : ISourceTensors
    {
        public SourceTensor Get(string name)
        {
            var t = checkpoint.Get(name);
            return new SourceTensor(t.Type, t.Shape, t.Data);
        }

        public void Dispose() => checkpoint.Dispose();
    }
}

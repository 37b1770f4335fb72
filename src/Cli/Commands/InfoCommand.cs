using System.CommandLine;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Cli.Commands;

/// <summary><c>odllm info &lt;model&gt; [--json]</c></summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var options = new ModelOptions();
        var command = new Command("info", "Show a model's architecture, hyper-parameters, tokenizer and tensors.");
        options.AddTo(command);
        command.SetAction(parse => CliRunner.Run(() =>
        {
            using var model = options.Load(parse);
            var c = model.Config;
            var file = model.File;
            long weightBytes = file.Tensors.Sum(t => t.ByteLength);
            var types = file.Tensors.GroupBy(t => t.Type).ToDictionary(g => g.Key.ToString().ToLowerInvariant(), g => g.Count());
            if (parse.GetValue(options.Json))
            {
                CliRunner.WriteJson(w =>
                {
                    w.WriteString("source", model.Source);
                    w.WriteString("architecture", c.Architecture);
                    w.WriteString("format", file.Format);
                    w.WriteNumber("format_version", file.FormatVersion);
                    w.WriteString("quantization", file.Provenance.Quantization);
                    w.WriteNumber("vocab_size", c.VocabSize);
                    w.WriteNumber("hidden_size", c.HiddenSize);
                    w.WriteNumber("num_layers", c.NumLayers);
                    w.WriteNumber("num_heads", c.NumHeads);
                    w.WriteNumber("num_kv_heads", c.NumKvHeads);
                    w.WriteNumber("head_dim", c.HeadDim);
                    w.WriteNumber("intermediate_size", c.IntermediateSize);
                    w.WriteNumber("context_length", c.ContextLength);
                    w.WriteString("position_encoding", c.Positions.ToString().ToLowerInvariant());
                    w.WriteNumber("parameters", file.Tensors.Sum(t => t.ElementCount));
                    w.WriteNumber("weight_bytes", weightBytes);
                    w.WriteNumber("tensors", file.Tensors.Count);
                    w.WriteStartObject("tensor_types");
                    foreach (var (type, count) in types) w.WriteNumber(type, count);
                    w.WriteEndObject();
                    w.WriteStartArray("tokenizer_files");
                    foreach (var name in file.Tokenizer.Files.Keys.Order()) w.WriteStringValue(name);
                    w.WriteEndArray();
                    if (model.Special.Bos is int bos) w.WriteNumber("bos_token_id", bos); else w.WriteNull("bos_token_id");
                    w.WriteArray("eos_token_ids", model.Special.Eos);
                    w.WriteBoolean("add_bos", model.Special.AddBos);
                    w.WriteBoolean("has_chat_template", model.Special.ChatTemplate is not null);
                });
            }
            else
            {
                Console.WriteLine($"{model.Source}");
                Console.WriteLine($"  architecture   {c.Architecture} ({c.NumLayers} layers, hidden {c.HiddenSize}, {c.NumHeads} heads / {c.NumKvHeads} KV heads of {c.HeadDim}, FFN {c.IntermediateSize})");
                Console.WriteLine($"  vocabulary     {c.VocabSize}, context {c.ContextLength}, {c.Positions}");
                Console.WriteLine($"  weights        {file.Tensors.Sum(t => t.ElementCount):N0} parameters, {weightBytes:N0} bytes ({string.Join(", ", types.Select(t => $"{t.Value} {t.Key}"))})");
                Console.WriteLine($"  quantization   {file.Provenance.Quantization}");
                Console.WriteLine($"  tokenizer      {(file.Tokenizer.IsEmpty ? "none" : string.Join(", ", file.Tokenizer.Files.Keys.Order()))}");
                Console.WriteLine($"  special tokens bos {model.Special.Bos?.ToString() ?? "none"}, eos [{string.Join(", ", model.Special.Eos)}], add_bos {model.Special.AddBos}");
            }
            return 0;
        }));
        return command;
    }
}

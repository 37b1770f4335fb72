using System.CommandLine;
using System.Text.Json;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Tokenization;

namespace OnDeviceLlm.Cli.Commands;

/// <summary><c>odllm tokenize &lt;model | tokenizer&gt; (--text s | --texts-file f.json) [--add-special] [--json]</c></summary>
internal static class TokenizeCommand
{
    public static Command Create()
    {
        var source = new Argument<string>("model") { Description = "An .odlm file, a GGUF file (vocab-only included), a tokenizer.json / tokenizer.model file, or a folder holding tokenizer files." };
        var text = new Option<string?>("--text") { Description = "The text to encode." };
        var textsFile = new Option<string?>("--texts-file") { Description = "A JSON array of strings; prints one id list per string." };
        var addSpecial = new Option<bool>("--add-special") { Description = "Add BOS/EOS as the tokenizer config says." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout." };
        var command = new Command("tokenize", "Encode text into token ids.") { source, text, textsFile, addSpecial, json };
        command.SetAction(parse => CliRunner.Run(() =>
        {
            string? single = parse.GetValue(text), file = parse.GetValue(textsFile);
            if ((single is null) == (file is null)) throw new ArgumentException("Give exactly one of --text or --texts-file.");
            var tokenizer = LoadTokenizer(parse.GetValue(source)!);
            bool special = parse.GetValue(addSpecial);
            if (single is not null)
            {
                var ids = tokenizer.Encode(single, special);
                if (parse.GetValue(json)) CliRunner.WriteJson(w => w.WriteArray("ids", ids));
                else Console.WriteLine(string.Join(",", ids));
                return 0;
            }
            var texts = JsonSerializer.Deserialize<string[]>(File.ReadAllText(file!))
                        ?? throw new ArgumentException($"{file} must hold a JSON array of strings.");
            var all = texts.Select(t => tokenizer.Encode(t ?? throw new ArgumentException($"{file} holds a null entry."), special)).ToList();
            if (parse.GetValue(json))
            {
                CliRunner.WriteJson(w =>
                {
                    w.WriteStartArray("ids");
                    foreach (var ids in all)
                    {
                        w.WriteStartArray();
                        foreach (var id in ids) w.WriteNumberValue(id);
                        w.WriteEndArray();
                    }
                    w.WriteEndArray();
                });
            }
            else foreach (var ids in all) Console.WriteLine(string.Join(",", ids));
            return 0;
        }));
        return command;
    }

    /// <summary>An .odlm file's embedded tokenizer, else tokenizer files (a Hugging Face folder's or a GGUF's included) read directly.</summary>
    private static TextTokenizer LoadTokenizer(string path)
    {
        if (File.Exists(path) && path.EndsWith(".odlm", StringComparison.OrdinalIgnoreCase))
        {
            using var file = ModelFile.Open(path);
            if (file.Tokenizer.IsEmpty) throw new TokenizerException($"{path} was converted without a tokenizer.");
            return TextTokenizer.Load(file.Tokenizer);
        }
        return TextTokenizer.LoadFromPath(path);
    }
}

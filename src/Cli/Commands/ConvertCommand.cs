using System.CommandLine;
using OnDeviceLlm.Runtime.Conversion;
using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Import.Gguf;
using OnDeviceLlm.Runtime.Quantization;
using Spectre.Console;

namespace OnDeviceLlm.Cli.Commands;

/// <summary><c>odllm convert &lt;hf-dir | model.gguf | model.odlm&gt; -o (model.odlm | model.gguf) [--quant q]</c>; a .gguf output is written in llama.cpp's conventions.</summary>
internal static class ConvertCommand
{
    public static Command Create()
    {
        var source = new Argument<string>("source") { Description = "A Hugging Face model folder (config.json, *.safetensors, tokenizer files), a GGUF file, or (for a .gguf output) an .odlm file." };
        var output = new Option<string>("--output", "-o") { Description = "The .odlm file to write, or a .gguf file for llama.cpp.", Required = true };
        var quant = new Option<string>("--quant") { Description = "Storage type of the matrices: source|f32|f16|bf16|int8 (per-row scale)|q8 (GGUF Q8_0)|q4 (GGUF Q4_0)|mixed (q4, with q8 embeddings and output head).", DefaultValueFactory = _ => "source" };
        var command = new Command("convert", "Convert a checkpoint into one memory-mappable .odlm file.") { source, output, quant };
        command.SetAction(parse => CliRunner.Run(() =>
        {
            var scheme = QuantizationScheme.Parse(parse.GetValue(quant)!);
            string input = parse.GetValue(source)!, target = parse.GetValue(output)!;
            bool toGguf = target.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase);
            bool fromOdlm = File.Exists(input) && input.EndsWith(".odlm", StringComparison.OrdinalIgnoreCase);
            if (fromOdlm && toGguf)
            {
                if (scheme != QuantizationScheme.Source) throw new ArgumentException("--quant applies when converting a checkpoint; an .odlm file is exported with its own storage types.");
                using (var model = ModelFile.Open(input)) GgufExporter.Write(model, target);
                Console.Error.WriteLine($"wrote {target} ({new FileInfo(target).Length:N0} bytes)");
                return 0;
            }
            if (!Directory.Exists(input) && !GgufFile.IsGguf(input))
                throw new DirectoryNotFoundException($"{input} is neither a Hugging Face model folder nor a .gguf file.");
            string odlm = toGguf ? Path.Combine(Path.GetTempPath(), $"odllm-{Guid.NewGuid():N}.odlm") : target;
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            IReadOnlyList<string> notes = [];
            console.Progress().AutoClear(true).Start(context =>
            {
                var task = context.AddTask("converting", maxValue: 1);
                notes = ModelConverter.Convert(input, odlm, scheme, new Progress<(int Done, int Total, string Name)>(p =>
                {
                    task.MaxValue = p.Total;
                    task.Value = p.Done;
                    task.Description = p.Name;
                }));
            });
            foreach (var note in notes) Console.Error.WriteLine(note);
            if (toGguf)
            {
                try { using (var model = ModelFile.Open(odlm)) GgufExporter.Write(model, target); }
                finally { File.Delete(odlm); }
            }
            Console.Error.WriteLine($"wrote {target} ({new FileInfo(target).Length:N0} bytes, {scheme})");
            return 0;
        }));
        return command;
    }
}

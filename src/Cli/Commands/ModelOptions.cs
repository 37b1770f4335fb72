using System.CommandLine;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Quantization;

namespace OnDeviceLlm.Cli.Commands;

/// <summary>The model argument and the options every model-running command shares.</summary>
internal sealed class ModelOptions
{
    public readonly Argument<string> Model = new("model") { Description = "An .odlm file, a GGUF file or a Hugging Face model folder." };
    public readonly Option<string?> Quant = new("--quant") { Description = "Storage type when converting a Hugging Face folder or GGUF file on the fly: source|f32|f16|bf16|int8|q8|q4|mixed." };
    public readonly Option<bool> Json = new("--json") { Description = "Print one JSON object on stdout." };
    public readonly Option<int> Threads = new("--threads") { Description = "Compute threads (default: physical cores)." };
    public readonly Option<string?> Backend = new("--backend") { Description = "Where to run: auto|cuda|native|managed (auto: a CUDA GPU when usable, else the CPU)." };

    public void AddTo(Command command)
    {
        command.Add(Model);
        command.Add(Quant);
        command.Add(Json);
        command.Add(Threads);
        command.Add(Backend);
    }

    public static KernelBackend ParseBackend(string? text) => text?.ToLowerInvariant() switch
    {
        null or "auto" => KernelBackend.Auto,
        "cuda" or "gpu" => KernelBackend.Cuda,
        "native" or "cpu" => KernelBackend.Native,
        "managed" => KernelBackend.Managed,
        _ => throw new ArgumentException($"--backend: \"{text}\" is not one of auto, cuda, native, managed."),
    };

    public LanguageModel Load(ParseResult parse)
    {
        string? quant = parse.GetValue(Quant);
        var options = new LoadOptions
        {
            Quantization = quant is null ? QuantizationScheme.Source : QuantizationScheme.Parse(quant),
            Threads = parse.GetValue(Threads),
            Backend = ParseBackend(parse.GetValue(Backend)),
        };
        return LanguageModel.Load(parse.GetValue(Model)!, options);
    }
}

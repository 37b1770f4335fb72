using System.CommandLine;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Inference;

namespace OnDeviceLlm.Cli.Commands;

/// <summary><c>odllm generate &lt;model&gt; (--prompt s | --ids 1,2,3) [sampling options] [--json]</c></summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var options = new ModelOptions();
        var prompt = new Option<string?>("--prompt") { Description = "Prompt text (BOS is added as the tokenizer config says)." };
        var ids = new Option<string?>("--ids") { Description = "Prompt as comma-separated token ids." };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Most tokens to generate.", DefaultValueFactory = _ => 64 };
        var temperature = new Option<float>("--temperature") { Description = "0 is greedy.", DefaultValueFactory = _ => 0f };
        var topK = new Option<int>("--top-k") { Description = "Keep the k most likely tokens (0 = off)." };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling mass (1 = off).", DefaultValueFactory = _ => 1f };
        var minP = new Option<float>("--min-p") { Description = "Drop tokens below min_p × the top probability (0 = off)." };
        var repetition = new Option<float>("--repetition-penalty") { Description = "Penalty for tokens already present (1 = off).", DefaultValueFactory = _ => 1f };
        var seed = new Option<int?>("--seed") { Description = "Seed for sampling; the same seed gives the same output." };
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "Keep generating past the end-of-sequence token." };
        var command = new Command("generate", "Generate a continuation of a prompt.")
            { prompt, ids, maxNew, temperature, topK, topP, minP, repetition, seed, ignoreEos };
        options.AddTo(command);
        command.SetAction(parse => CliRunner.Run(() =>
        {
            string? text = parse.GetValue(prompt), idText = parse.GetValue(ids);
            if ((text is null) == (idText is null)) throw new ArgumentException("Give exactly one of --prompt or --ids.");
            var generation = new GenerationOptions
            {
                MaxNewTokens = parse.GetValue(maxNew),
                IgnoreEos = parse.GetValue(ignoreEos),
                Sampling = new SamplingOptions
                {
                    Temperature = parse.GetValue(temperature),
                    TopK = parse.GetValue(topK),
                    TopP = parse.GetValue(topP),
                    MinP = parse.GetValue(minP),
                    RepetitionPenalty = parse.GetValue(repetition),
                    Seed = parse.GetValue(seed),
                },
            };
            generation.Validate();

            using var model = options.Load(parse);
            IReadOnlyList<int> input = text is not null ? model.EncodePrompt(text) : CliRunner.ParseIds(idText!);
            var tokenizer = text is not null ? model.Tokenizer : null;
            bool json = parse.GetValue(options.Json);
            var generator = new Generator(model.CreateSession(), generation, model.Special.Eos);
            var produced = new List<int>();
            string shown = "";
            foreach (var token in generator.Generate(input))
            {
                produced.Add(token);
                if (json || tokenizer is null) continue;
                // Print only text that decodes completely, so multi-byte characters are never split.
                string decoded = tokenizer.Decode(produced.ToArray(), skipSpecialTokens: true);
                if (decoded.Length > shown.Length && !decoded.EndsWith('\uFFFD'))
                {
                    Console.Write(decoded[shown.Length..]);
                    shown = decoded;
                }
            }
            string finalText = model.Tokenizer?.Decode(produced.ToArray(), skipSpecialTokens: true) ?? "";
            if (json)
            {
                CliRunner.WriteJson(w =>
                {
                    w.WriteArray("ids", produced);
                    w.WriteString("text", finalText);
                    w.WriteString("finish_reason", generator.FinishReason?.ToString().ToLowerInvariant());
                });
            }
            else if (tokenizer is null) Console.WriteLine(string.Join(",", produced));
            else Console.WriteLine(finalText.Length > shown.Length ? finalText[shown.Length..] : "");
            return 0;
        }));
        return command;
    }
}

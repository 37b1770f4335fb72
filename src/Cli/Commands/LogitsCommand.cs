using System.CommandLine;
using OnDeviceLlm.Runtime.Inference;

namespace OnDeviceLlm.Cli.Commands;

/// <summary><c>odllm logits &lt;model&gt; --ids 1,2,3 [--quant q] [--json]</c>: one forward pass over the ids.</summary>
internal static class LogitsCommand
{
    public static Command Create()
    {
        var options = new ModelOptions();
        var ids = new Option<string>("--ids") { Description = "Comma-separated token ids.", Required = true };
        var command = new Command("logits", "Print the last position's logits and the argmax at every position.") { ids };
        options.AddTo(command);
        command.SetAction(parse => CliRunner.Run(() =>
        {
            var input = CliRunner.ParseIds(parse.GetValue(ids)!);
            using var model = options.Load(parse);
            int vocab = model.Config.VocabSize;
            var logits = new float[input.Length * vocab];
            model.CreateSession().Evaluate(input, logits);
            var argmax = new int[input.Length];
            for (int p = 0; p < input.Length; p++) argmax[p] = Sampler.ArgMax(logits.AsSpan(p * vocab, vocab));
            var last = logits.AsSpan((input.Length - 1) * vocab, vocab).ToArray();
            if (parse.GetValue(options.Json))
            {
                CliRunner.WriteJson(w =>
                {
                    w.WriteStartArray("last_logits");
                    foreach (var x in last) w.WriteNumberValue(x);
                    w.WriteEndArray();
                    w.WriteArray("argmax", argmax);
                });
            }
            else
            {
                Console.WriteLine($"argmax per position: {string.Join(",", argmax)}");
                Console.WriteLine("top 5 at the last position:");
                foreach (var (id, value) in last.Select((v, i) => (i, v)).OrderByDescending(p => p.v).Take(5))
                    Console.WriteLine($"  {id,8}  {value:F6}");
            }
            return 0;
        }));
        return command;
    }
}

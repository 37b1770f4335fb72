using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using OnDeviceLlm.Cli.Bench;
using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Import.Gguf;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Quantization;

namespace OnDeviceLlm.Benchmarks;

internal sealed record PeerSettings(string Shape, string Quant, int Threads, int PromptTokens, int GenTokens, int Repeats);

/// <summary>
/// <c>peer</c>: writes (or reuses) odllm bench's synthetic model, exports it to GGUF with the same weight bytes, and
/// measures our engine and llama.cpp on it, each in its own child process, one after the other.
/// </summary>
internal static class PeerBenchmark
{
    /// <summary>Storage types llama.cpp reads with the very same bytes; int8's per-row scales have no GGUF type.</summary>
    private static readonly TensorType[] Exportable = [TensorType.Q4_0, TensorType.Q8_0, TensorType.F16, TensorType.BF16, TensorType.F32];

    public static int Run(PeerSettings s, bool json)
    {
        var config = SyntheticShapes.ByName(s.Shape);
        var scheme = QuantizationScheme.Parse(s.Quant);
        if (scheme.MatrixType is not { } type || scheme.EmbeddingType is not null || !Exportable.Contains(type))
            throw new ArgumentException($"--quant {s.Quant} has no byte-identical llama.cpp type; use q4, q8, f16, bf16 or f32.");
        if (s.Threads < 1) throw new ArgumentException("--threads must be at least 1.");
        if (s.Repeats < 1) throw new ArgumentException("--repeats must be at least 1.");
        if (s.PromptTokens < 1 || s.GenTokens < 1 || s.PromptTokens + s.GenTokens > config.ContextLength)
            throw new ArgumentException($"--prompt-tokens and --gen-tokens must be at least 1 and together fit {s.Shape}'s context of {config.ContextLength}.");

        // The folder odllm bench uses, so either tool reuses the other's model.
        string directory = Path.Combine(Path.GetTempPath(), "odllm-bench");
        Progress(json, $"model: {s.Shape} {scheme.Name} in {directory} (written on first use)");
        string odlm = SyntheticModels.Ensure(s.Shape, type, scheme.Name, directory);
        string gguf = Path.ChangeExtension(odlm, ".gguf");
        if (!File.Exists(gguf) || File.GetLastWriteTimeUtc(gguf) < File.GetLastWriteTimeUtc(odlm))
        {
            Progress(json, $"exporting {gguf}");
            using var model = ModelFile.Open(odlm);
            GgufExporter.Write(model, gguf);
        }

        Progress(json, "measuring ours");
        var ours = RunEngine(EngineRunner.Ours, odlm, s);
        Progress(json, "measuring llama.cpp");
        var peer = RunEngine(EngineRunner.LlamaCpp, gguf, s);
        // The weights are the same bytes, so a llama.cpp decode step reads as much of them as ours does.
        long bytesPerToken = ours["weight_bytes_per_token"]!.GetValue<long>();
        peer["weight_bytes_per_token"] = bytesPerToken;
        peer["decode_roofline_ratio"] = Math.Round(peer["decode_tok_s"]!.GetValue<double>() * bytesPerToken / (peer["read_bandwidth_gbs"]!.GetValue<double>() * 1e9), 3);

        double decodeRatio = ours["decode_tok_s"]!.GetValue<double>() / peer["decode_tok_s"]!.GetValue<double>();
        double prefillRatio = ours["prefill_tok_s"]!.GetValue<double>() / peer["prefill_tok_s"]!.GetValue<double>();
        if (json)
        {
            var result = new JsonObject
            {
                ["model"] = s.Shape,
                ["quant"] = scheme.Name,
                ["threads"] = s.Threads,
                ["prompt_tokens"] = s.PromptTokens,
                ["gen_tokens"] = s.GenTokens,
                ["repeats"] = s.Repeats,
                ["ours"] = ours,
                ["llama_cpp"] = peer,
                ["decode_ratio"] = Math.Round(decodeRatio, 3),
                ["prefill_ratio"] = Math.Round(prefillRatio, 3),
            };
            Console.WriteLine(result.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        else
        {
            Console.WriteLine($"{s.Shape} {scheme.Name}, {s.Threads} threads, {s.PromptTokens}-token prompt, {s.GenTokens} decoded tokens, median of {s.Repeats}");
            Console.WriteLine($"{"engine",-10} {"prefill tok/s",13} {"TTFT ms",9} {"decode tok/s",12} {"roofline",8} {"GB/s",6} {"open ms",8} {"peak RSS MB",11}");
            foreach (var e in new[] { ours, peer })
                Console.WriteLine($"{e["engine"],-10} {e["prefill_tok_s"],13} {e["ttft_ms"],9} {e["decode_tok_s"],12} "
                    + $"{e["decode_roofline_ratio"]!.GetValue<double>() * 100,7:F0}% {e["read_bandwidth_gbs"],6} {e["open_ms"],8} {e["peak_rss_bytes"]!.GetValue<long>() / 1e6,11:F0}");
            Console.WriteLine($"ours ÷ llama.cpp: decode {decodeRatio:F2}×, prefill {prefillRatio:F2}×; {bytesPerToken / 1e6:F0} MB of weights read per decoded token");
        }
        return 0;
    }

    private static void Progress(bool json, string message)
    {
        if (!json) Console.Error.WriteLine(message);
    }

    /// <summary>This program again, as <c>engine &lt;name&gt;</c>, returning the JSON object it prints.</summary>
    private static JsonObject RunEngine(string engine, string model, PeerSettings s)
    {
        string self = Environment.ProcessPath ?? throw new BenchmarkException("Cannot locate this program to start a child process.");
        var start = new ProcessStartInfo(self) { RedirectStandardOutput = true, UseShellExecute = false };
        // Started as `dotnet odllm-peer.dll`, the host needs the assembly again.
        if (Path.GetFileNameWithoutExtension(self).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
            start.ArgumentList.Add(typeof(PeerBenchmark).Assembly.Location);
        foreach (string a in new[] { "engine", engine, "--model", model, "--label", s.Shape, "--threads", s.Threads.ToString(),
                     "--prompt-tokens", s.PromptTokens.ToString(), "--gen-tokens", s.GenTokens.ToString(), "--repeats", s.Repeats.ToString() })
            start.ArgumentList.Add(a);
        using var child = Process.Start(start) ?? throw new BenchmarkException($"Could not start {self}.");
        string output = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        if (child.ExitCode != 0)
            throw new BenchmarkException($"Measuring {engine} failed (exit code {child.ExitCode}); its error is above.");
        string? line = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault(l => l.StartsWith('{'));
        return (line is null ? null : JsonNode.Parse(line) as JsonObject)
            ?? throw new BenchmarkException($"Measuring {engine} printed no figures: {output.Trim()}");
    }
}

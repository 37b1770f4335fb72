using System.CommandLine;
using OnDeviceLlm.Cli.Bench;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Inference;
using OnDeviceLlm.Runtime.Quantization;

namespace OnDeviceLlm.Cli.Commands;

/// <summary>
/// <c>odllm bench &lt;model | --synthetic gemma-2b|llama-110m&gt; [--quant q] [--prompt-tokens N] [--gen-tokens N] [--threads N] [--json]</c>:
/// prefill and decode speed on the CPU kernels, against the read bandwidth measured in the same run (DESIGN.md).
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var model = new Argument<string?>("model") { Description = "An .odlm file, a GGUF file or a Hugging Face folder (or use --synthetic).", Arity = ArgumentArity.ZeroOrOne };
        var synthetic = new Option<string?>("--synthetic") { Description = "A random-weight model of this shape instead: gemma-2b or llama-110m (written once to the temp folder)." };
        var quant = new Option<string?>("--quant") { Description = "Matrix storage type: f32|f16|bf16|int8|q8|q4 (synthetic; default q4) or a scheme for a Hugging Face folder." };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Prompt length.", DefaultValueFactory = _ => 1024 };
        var genTokens = new Option<int>("--gen-tokens") { Description = "Tokens to decode.", DefaultValueFactory = _ => 256 };
        var threads = new Option<int>("--threads") { Description = "Compute threads (default: physical cores)." };
        var repeats = new Option<int>("--repeats") { Description = "Runs to take the median of.", DefaultValueFactory = _ => 3 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout." };
        var backend = new Option<string?>("--backend") { Description = "native (the CPU kernels, default) or cuda (with --synthetic)." };
        var kvCache = new Option<string?>("--kv-cache") { Description = "KV cache element type, on the CPU or the GPU: auto (default: f32 for f32 models, else f16), f32 or f16." };
        var command = new Command("bench", "Measure prefill and decode speed on the CPU or a CUDA GPU.") { model, synthetic, quant, promptTokens, genTokens, threads, repeats, json, backend, kvCache };
        command.SetAction(parse => CliRunner.Run(() =>
        {
            string? path = parse.GetValue(model), shape = parse.GetValue(synthetic), quantName = parse.GetValue(quant);
            if ((path is null) == (shape is null)) throw new ArgumentException("Give either a model path or --synthetic <shape>, not both or neither.");
            if (ModelOptions.ParseBackend(parse.GetValue(backend)) == KernelBackend.Cuda)
                return CudaBenchCommand.Run(shape ?? throw new ArgumentException("--backend cuda benchmarks a --synthetic shape."),
                    quantName ?? "q4", parse.GetValue(promptTokens), parse.GetValue(genTokens), ParseKvCache(parse.GetValue(kvCache)),
                    parse.GetValue(json));
            if (parse.GetValue(repeats) < 1) throw new ArgumentException("--repeats must be at least 1.");
            if (parse.GetValue(threads) < 0) throw new ArgumentException("--threads must not be negative.");
            var options = new LoadOptions { Backend = KernelBackend.Native, Threads = parse.GetValue(threads), KvCacheType = ParseKvCache(parse.GetValue(kvCache)) };
            string label = path ?? shape!;
            if (shape is not null)
            {
                var scheme = QuantizationScheme.Parse(quantName ?? "q4");
                if (scheme.MatrixType is not { } type || scheme.EmbeddingType is not null)
                    throw new ArgumentException("--quant must name one storage type for a synthetic model: f32, f16, bf16, int8, q8 or q4.");
                path = SyntheticModels.Ensure(shape, type, scheme.Name, Path.Combine(Path.GetTempPath(), "odllm-bench"));
            }
            else if (quantName is not null)
            {
                options = options with { Quantization = QuantizationScheme.Parse(quantName) };
            }

            var r = CpuBenchmark.Run(path!, label, options, parse.GetValue(promptTokens), parse.GetValue(genTokens), parse.GetValue(repeats));
            if (parse.GetValue(json))
            {
                CliRunner.WriteJson(w =>
                {
                    w.WriteString("model", r.Model);
                    w.WriteString("quant", r.Quant);
                    w.WriteString("kernels", r.Kernels);
                    w.WriteNumber("threads", r.Threads);
                    w.WriteNumber("prompt_tokens", r.PromptTokens);
                    w.WriteNumber("gen_tokens", r.GenTokens);
                    w.WriteNumber("open_ms", Math.Round(r.OpenMs, 1));
                    w.WriteNumber("prefill_tok_s", Math.Round(r.PrefillTokS, 2));
                    w.WriteNumber("ttft_ms", Math.Round(r.TtftMs, 1));
                    w.WriteNumber("decode_tok_s", Math.Round(r.DecodeTokS, 2));
                    w.WriteNumber("peak_rss_bytes", r.PeakRssBytes);
                    w.WriteNumber("file_bytes", r.FileBytes);
                    w.WriteNumber("weight_bytes_per_token", r.WeightBytesPerToken);
                    w.WriteNumber("read_bandwidth_gbs", Math.Round(r.ReadBandwidthGbs, 2));
                    w.WriteNumber("decode_roofline_ratio", Math.Round(r.DecodeRooflineRatio, 3));
                    w.WriteNumber("decode_matmul_share", Math.Round(r.DecodeMatMulShare, 3));
                    if (r.ManagedOverheadFraction is { } managed) w.WriteNumber("managed_overhead_fraction", Math.Round(managed, 4));
                    w.WriteString("kv_cache_type", r.KvCacheType.ToString().ToLowerInvariant());
                    w.WriteNumber("kv_cache_bytes", r.KvCacheBytes);
                });
            }
            else
            {
                Console.WriteLine($"{r.Model} {r.Quant}, {r.Kernels}: open {r.OpenMs:F0} ms; prefill {r.PrefillTokS:F1} tok/s "
                    + $"({r.PromptTokens} tokens, TTFT {r.TtftMs:F0} ms); decode {r.DecodeTokS:F2} tok/s ({r.GenTokens} tokens), "
                    + $"{r.DecodeRooflineRatio:P0} of the {r.ReadBandwidthGbs:F1} GB/s read roofline ({r.WeightBytesPerToken / 1e6:F0} MB/token); "
                    + $"{r.DecodeMatMulShare:P0} of decode in matmul"
                    + (r.ManagedOverheadFraction is { } managed ? $", {managed:P1} outside native calls" : "")
                    + $"; {r.KvCacheType} KV cache {r.KvCacheBytes / 1e6:F0} MB; peak RSS {r.PeakRssBytes / 1e6:F0} MB for a {r.FileBytes / 1e6:F0} MB file");
            }
            return 0;
        }));
        return command;
    }

    private static KvCacheType ParseKvCache(string? name) => name?.ToLowerInvariant() switch
    {
        null or "auto" => KvCacheType.Auto,
        "f32" => KvCacheType.F32,
        "f16" => KvCacheType.F16,
        _ => throw new ArgumentException($"--kv-cache must be auto, f32 or f16, not \"{name}\"."),
    };
}

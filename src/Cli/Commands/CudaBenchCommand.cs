using System.CommandLine;
using System.Diagnostics;
using OnDeviceLlm.Runtime.Inference;
using OnDeviceLlm.Runtime.Quantization;

namespace OnDeviceLlm.Cli.Commands;

/// <summary>
/// <c>odllm bench-cuda --synthetic gemma-2b [--quant q4|q8|f16|bf16|int8|f32] [--prompt-tokens N] [--gen-tokens N] [--json]</c>:
/// the CUDA backend on random weights, with the fields of <c>odllm bench</c> (DESIGN.md) and the bandwidth measured in the same run.
/// </summary>
internal static class CudaBenchCommand
{
    public static Command Create()
    {
        var synthetic = new Option<string>("--synthetic") { Description = "Model shape with random weights: gemma-2b.", DefaultValueFactory = _ => "gemma-2b" };
        var quant = new Option<string>("--quant") { Description = "Storage type of the matrices: f32|f16|bf16|int8|q8|q4.", DefaultValueFactory = _ => "q4" };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Prompt length.", DefaultValueFactory = _ => 1024 };
        var genTokens = new Option<int>("--gen-tokens") { Description = "Tokens to decode.", DefaultValueFactory = _ => 256 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout." };
        var command = new Command("bench-cuda", "Measure prefill and decode speed on a CUDA GPU.") { synthetic, quant, promptTokens, genTokens, json };
        command.SetAction(parse => CliRunner.Run(() =>
        {
            var type = QuantizationScheme.Parse(parse.GetValue(quant)!).MatrixType
                ?? throw new ArgumentException("--quant must name a storage type: f32, f16, bf16, int8, q8 or q4.");
            var r = CudaBenchmark.Run(parse.GetValue(synthetic)!, type, parse.GetValue(promptTokens), parse.GetValue(genTokens));
            long rss = Process.GetCurrentProcess().PeakWorkingSet64;
            if (parse.GetValue(json))
            {
                CliRunner.WriteJson(w =>
                {
                    w.WriteString("model", r.Model);
                    w.WriteString("quant", r.Quant);
                    w.WriteString("backend", "cuda");
                    w.WriteString("device", r.Device);
                    w.WriteNumber("prompt_tokens", r.PromptTokens);
                    w.WriteNumber("gen_tokens", r.GenTokens);
                    w.WriteNumber("open_ms", Math.Round(r.OpenMs, 1));
                    w.WriteNumber("prefill_tok_s", Math.Round(r.PrefillTokS, 1));
                    w.WriteNumber("ttft_ms", Math.Round(r.TtftMs, 2));
                    w.WriteNumber("decode_tok_s", Math.Round(r.DecodeTokS, 1));
                    w.WriteNumber("decode_no_graph_tok_s", Math.Round(r.DecodeNoGraphTokS, 1));
                    w.WriteNumber("peak_rss_bytes", rss);
                    w.WriteNumber("weight_bytes_per_token", r.WeightBytesPerToken);
                    w.WriteNumber("read_bandwidth_gbs", Math.Round(r.ReadBandwidthGbs, 1));
                    w.WriteNumber("decode_roofline_ratio", Math.Round(r.DecodeRooflineRatio, 3));
                });
            }
            else
            {
                Console.WriteLine($"{r.Model} {r.Quant} on {r.Device}: prefill {r.PrefillTokS:F0} tok/s ({r.PromptTokens} tokens), "
                    + $"decode {r.DecodeTokS:F1} tok/s (no graph {r.DecodeNoGraphTokS:F1}), roofline {r.DecodeRooflineRatio:P0} of {r.ReadBandwidthGbs:F0} GB/s");
            }
            return 0;
        }));
        return command;
    }
}

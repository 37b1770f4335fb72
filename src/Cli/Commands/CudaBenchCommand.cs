using System.Diagnostics;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Inference;
using OnDeviceLlm.Runtime.Quantization;

namespace OnDeviceLlm.Cli.Commands;

/// <summary>
/// <c>odllm bench --backend cuda --synthetic gemma-2b [--quant q4|q8|f16|bf16|int8|f32] [--prompt-tokens N] [--gen-tokens N] [--kv-cache auto|f32|f16] [--json]</c>:
/// the CUDA backend on random weights, with the fields of the CPU bench (DESIGN.md) and the device bandwidth measured in the same run.
/// </summary>
internal static class CudaBenchCommand
{
    public static int Run(string shape, string quant, int promptTokens, int genTokens, KvCacheType kvCacheType, bool json)
    {
        var type = QuantizationScheme.Parse(quant).MatrixType
            ?? throw new ArgumentException("--quant must name a storage type: f32, f16, bf16, int8, q8 or q4.");
        var r = CudaBenchmark.Run(shape, type, promptTokens, genTokens, kvCacheType: kvCacheType);
        long rss = Process.GetCurrentProcess().PeakWorkingSet64;
        if (json)
        {
            CliRunner.WriteJson(w =>
            {
                w.WriteString("model", r.Model);
                w.WriteString("quant", r.Quant);
                w.WriteString("kernels", "cuda");
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
                w.WriteString("kv_cache_type", r.KvCacheType.ToString().ToLowerInvariant());
                w.WriteNumber("kv_cache_bytes", r.KvCacheBytes);
            });
        }
        else
        {
            Console.WriteLine($"{r.Model} {r.Quant} on {r.Device}: prefill {r.PrefillTokS:F0} tok/s ({r.PromptTokens} tokens), "
                + $"decode {r.DecodeTokS:F1} tok/s (no graph {r.DecodeNoGraphTokS:F1}), roofline {r.DecodeRooflineRatio:P0} of {r.ReadBandwidthGbs:F0} GB/s; "
                + $"{r.KvCacheType} KV cache {r.KvCacheBytes / 1e6:F0} MB");
        }
        return 0;
    }
}

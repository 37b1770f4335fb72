using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using LLama;
using LLama.Common;
using LLama.Native;
using OnDeviceLlm.Cli.Bench;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Compute;

namespace OnDeviceLlm.Benchmarks;

/// <summary>A peer run that cannot go on: a child process failed or printed no figures.</summary>
internal sealed class BenchmarkException(string message) : Exception(message);

/// <summary>
/// Measures one engine in this process and prints its figures as one JSON object: ours through odllm bench's own
/// <see cref="CpuBenchmark"/>, llama.cpp through LLamaSharp the way llama-bench does it (the prompt in one decode
/// call, then fixed tokens one decode call each, no sampling). Both feed the same random token ids.
/// </summary>
internal static class EngineRunner
{
    public const string Ours = "ours";
    public const string LlamaCpp = "llama.cpp";

    public static int Run(string engine, string model, string label, int threads, int promptTokens, int genTokens, int repeats)
    {
        var figures = engine switch
        {
            Ours => RunOurs(model, label, threads, promptTokens, genTokens, repeats),
            LlamaCpp => RunLlamaCpp(model, threads, promptTokens, genTokens, repeats),
            _ => throw new ArgumentException($"Unknown engine \"{engine}\"; expected {Ours} or {LlamaCpp}."),
        };
        Console.WriteLine(figures.ToJsonString());
        return 0;
    }

    private static JsonObject RunOurs(string model, string label, int threads, int promptTokens, int genTokens, int repeats)
    {
        var options = new LoadOptions { Backend = KernelBackend.Native, Threads = threads };
        var r = CpuBenchmark.Run(model, label, options, promptTokens, genTokens, repeats);
        return new JsonObject
        {
            ["engine"] = Ours,
            ["kernels"] = r.Kernels,
            ["threads"] = r.Threads,
            ["open_ms"] = Math.Round(r.OpenMs, 1),
            ["prefill_tok_s"] = Math.Round(r.PrefillTokS, 2),
            ["ttft_ms"] = Math.Round(r.TtftMs, 1),
            ["decode_tok_s"] = Math.Round(r.DecodeTokS, 2),
            ["peak_rss_bytes"] = r.PeakRssBytes,
            ["file_bytes"] = r.FileBytes,
            ["weight_bytes_per_token"] = r.WeightBytesPerToken,
            ["read_bandwidth_gbs"] = Math.Round(r.ReadBandwidthGbs, 2),
            ["decode_roofline_ratio"] = Math.Round(r.DecodeRooflineRatio, 3),
            ["decode_matmul_share"] = Math.Round(r.DecodeMatMulShare, 3),
            ["managed_overhead_fraction"] = r.ManagedOverheadFraction is { } managed ? Math.Round(managed, 4) : null,
        };
    }

    private static JsonObject RunLlamaCpp(string gguf, int threads, int promptTokens, int genTokens, int repeats)
    {
        if (threads < 1) throw new ArgumentException("--threads must be at least 1.");
        if (repeats < 1) throw new ArgumentException("--repeats must be at least 1.");
        NativeLibraryConfig.All.WithLogCallback((level, message) =>
        {
            if (level == LLamaLogLevel.Error) Console.Error.Write(message);
        });
        // Loads the native library before the clock starts, so open_ms is the model's open time alone.
        NativeApi.llama_empty_call();

        var parameters = new ModelParams(gguf)
        {
            ContextSize = (uint)(promptTokens + genTokens),
            BatchSize = (uint)promptTokens,
            Threads = threads,
            BatchThreads = threads,
            GpuLayerCount = 0,
        };
        var open = Stopwatch.StartNew();
        using var weights = LLamaWeights.LoadFromFile(parameters);
        using var context = weights.CreateContext(parameters);
        double openMs = open.Elapsed.TotalMilliseconds;
        int vocab = weights.Vocab.Count;

        // The same ids CpuBenchmark feeds our engine: Random(7), the prompt first, then the decoded tokens.
        var random = new Random(7);
        var prompt = new LLamaToken[promptTokens];
        for (int i = 0; i < prompt.Length; i++) prompt[i] = random.Next(vocab);
        var generated = new LLamaToken[genTokens];
        for (int i = 0; i < generated.Length; i++) generated[i] = random.Next(vocab);

        var handle = context.NativeHandle;
        var batch = new LLamaBatch();
        var prefill = new double[repeats];
        var decode = new double[repeats];
        for (int r = 0; r < repeats; r++)
        {
            handle.MemoryClear(true);
            batch.Clear();
            for (int i = 0; i < prompt.Length; i++) batch.Add(prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
            var watch = Stopwatch.StartNew();
            Check(handle.Decode(batch));
            handle.Synchronize();
            prefill[r] = watch.Elapsed.TotalSeconds;

            watch.Restart();
            for (int i = 0; i < generated.Length; i++)
            {
                batch.Clear();
                batch.Add(generated[i], promptTokens + i, LLamaSeqId.Zero, true);
                Check(handle.Decode(batch));
                handle.Synchronize();
            }
            decode[r] = watch.Elapsed.TotalSeconds;
        }
        long peakRss = Process.GetCurrentProcess().PeakWorkingSet64;
        double prefillSeconds = Median(prefill);
        return new JsonObject
        {
            ["engine"] = LlamaCpp,
            ["kernels"] = "LLamaSharp 0.30.0: " + (Marshal.PtrToStringAnsi(NativeApi.llama_print_system_info()) ?? "").Trim(),
            ["threads"] = threads,
            ["flash_attention"] = parameters.FlashAttention?.ToString() ?? "llama.cpp default",
            ["open_ms"] = Math.Round(openMs, 1),
            ["prefill_tok_s"] = Math.Round(promptTokens / prefillSeconds, 2),
            ["ttft_ms"] = Math.Round(prefillSeconds * 1000, 1),
            ["decode_tok_s"] = Math.Round(genTokens / Median(decode), 2),
            ["peak_rss_bytes"] = peakRss,
            ["file_bytes"] = new FileInfo(gguf).Length,
            // After the model runs, as CpuBenchmark does, so the probe's buffer never counts toward peak memory.
            ["read_bandwidth_gbs"] = Math.Round(CpuBenchmark.ReadBandwidth(threads) / 1e9, 2),
        };
    }

    private static void Check(DecodeResult result)
    {
        if (result != DecodeResult.Ok) throw new BenchmarkException($"llama.cpp's decode failed: {result}.");
    }

    private static double Median(double[] values)
    {
        var sorted = (double[])values.Clone();
        Array.Sort(sorted);
        return sorted[sorted.Length / 2];
    }
}

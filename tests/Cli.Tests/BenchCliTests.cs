using Xunit;

namespace OnDeviceLlm.Cli.Tests;

/// <summary><c>odllm bench</c>: the DESIGN.md fields, their arithmetic, and clean failures. Speed itself is never asserted.</summary>
public class BenchCliTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("odllm-bench-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    [Fact]
    public void QuantizedFixture_ReportsEveryFieldConsistently()
    {
        string model = Path.Combine(_temp, "llama-q8.odlm");
        var convert = CliHarness.Run("convert", Path.Combine(CliHarness.Fixtures, "llama"), "-o", model, "--quant", "q8");
        Assert.True(convert.ExitCode == 0, convert.Stderr);

        var r = CliHarness.Run("bench", model, "--prompt-tokens", "9", "--gen-tokens", "5", "--threads", "2", "--repeats", "2", "--json").Json();
        Assert.Equal(model, r.GetProperty("model").GetString());
        Assert.Equal("q8", r.GetProperty("quant").GetString());
        Assert.Equal(2, r.GetProperty("threads").GetInt32());
        Assert.Equal(9, r.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(5, r.GetProperty("gen_tokens").GetInt32());
        Assert.StartsWith("native-", r.GetProperty("kernels").GetString());
        foreach (var field in new[] { "open_ms", "prefill_tok_s", "ttft_ms", "decode_tok_s", "read_bandwidth_gbs", "decode_roofline_ratio" })
            Assert.True(r.GetProperty(field).GetDouble() > 0, field);
        double share = r.GetProperty("decode_matmul_share").GetDouble();
        Assert.InRange(share, 0.0, 1.0);

        long fileBytes = r.GetProperty("file_bytes").GetInt64(), perToken = r.GetProperty("weight_bytes_per_token").GetInt64();
        Assert.Equal(new FileInfo(model).Length, fileBytes);
        // A decode step reads every matrix once but only one row of an untied token embedding.
        var info = CliHarness.Run("info", model, "--json").Json();
        long embedding = 512L * 64 / 32 * 34; // vocab 512 × hidden 64 in Q8_0 blocks
        long expected = info.GetProperty("weight_bytes").GetInt64() - (TiedEmbeddings() ? 0 : embedding);
        Assert.Equal(expected, perToken);
        // A q8 model gets the f16 KV cache: layers × (prompt + generated) positions × KV heads × head_dim × K and V × 2 bytes.
        Assert.Equal("f16", r.GetProperty("kv_cache_type").GetString());
        Assert.Equal(info.GetProperty("num_layers").GetInt64() * (9 + 5) * info.GetProperty("num_kv_heads").GetInt64()
                     * info.GetProperty("head_dim").GetInt64() * 2 * 2, r.GetProperty("kv_cache_bytes").GetInt64());
        Assert.True(r.GetProperty("peak_rss_bytes").GetInt64() > fileBytes);
        Assert.Equal(9 / r.GetProperty("prefill_tok_s").GetDouble() * 1000, r.GetProperty("ttft_ms").GetDouble(), 0.05 * r.GetProperty("ttft_ms").GetDouble());
        double ratio = r.GetProperty("decode_tok_s").GetDouble() * perToken / (r.GetProperty("read_bandwidth_gbs").GetDouble() * 1e9);
        Assert.Equal(ratio, r.GetProperty("decode_roofline_ratio").GetDouble(), 0.01 * ratio + 0.001);
    }

    private static bool TiedEmbeddings() =>
        System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(CliHarness.Fixtures, "llama", "config.json")))
            .RootElement.TryGetProperty("tie_word_embeddings", out var tied) && tied.GetBoolean();

    [Fact]
    public void HuggingFaceFolder_IsConvertedInMemoryWithTheScheme()
    {
        // The converted copy is unlinked once mapped: its size comes from the mapping, not the file system.
        var r = CliHarness.Run("bench", Path.Combine(CliHarness.Fixtures, "llama"), "--quant", "q4", "--prompt-tokens", "4",
            "--gen-tokens", "2", "--threads", "1", "--repeats", "1", "--json").Json();
        Assert.Equal("q4", r.GetProperty("quant").GetString());
        Assert.True(r.GetProperty("file_bytes").GetInt64() > r.GetProperty("weight_bytes_per_token").GetInt64());
    }

    [Fact]
    public void BadArguments_FailCleanly()
    {
        string fixture = Path.Combine(CliHarness.Fixtures, "llama");
        CliHarness.AssertCleanFailure(CliHarness.Run("bench", fixture, "--synthetic", "llama-110m"), "either a model path or --synthetic");
        CliHarness.AssertCleanFailure(CliHarness.Run("bench"), "either a model path or --synthetic");
        CliHarness.AssertCleanFailure(CliHarness.Run("bench", "--synthetic", "gpt-5"), "unknown synthetic shape");
        CliHarness.AssertCleanFailure(CliHarness.Run("bench", "--synthetic", "llama-110m", "--quant", "mixed"), "one storage type");
        CliHarness.AssertCleanFailure(CliHarness.Run("bench", fixture, "--prompt-tokens", "100000"), "fit the context");
        CliHarness.AssertCleanFailure(CliHarness.Run("bench", fixture, "--repeats", "0"), "--repeats");
    }
}

using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace OnDeviceLlm.Connector.Diagnostics;

/// <summary>
/// The connector's instruments, on the meter named <see cref="MeterName"/> (add it to an OpenTelemetry
/// MeterProvider or a MeterListener to collect them). Every measurement is tagged with gen_ai.request.model.
/// </summary>
public sealed class OnDeviceLlmMetrics : IDisposable
{
    public const string MeterName = "OnDeviceLlm";
    public const string TimeToFirstTokenName = "ondevicellm.time_to_first_token";
    public const string DecodeRateName = "ondevicellm.decode.tokens_per_second";
    public const string InputTokensName = "ondevicellm.tokens.input";
    public const string OutputTokensName = "ondevicellm.tokens.output";
    public const string ReusedTokensName = "ondevicellm.tokens.reused";

    private readonly Meter _meter;
    private readonly bool _ownsMeter;
    private readonly Histogram<double> _timeToFirstToken;
    private readonly Histogram<double> _decodeRate;
    private readonly Counter<long> _inputTokens, _outputTokens, _reusedTokens;

    /// <summary>Creates the instruments on a meter from <paramref name="meterFactory"/> (DI), or on a meter of its own.</summary>
    public OnDeviceLlmMetrics(IMeterFactory? meterFactory = null)
    {
        _ownsMeter = meterFactory is null;
        _meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);
        _timeToFirstToken = _meter.CreateHistogram<double>(TimeToFirstTokenName, "s", "Time from the request to the first generated token, prompt evaluation included.");
        _decodeRate = _meter.CreateHistogram<double>(DecodeRateName, "{token}/s", "Tokens generated per second after the first one.");
        _inputTokens = _meter.CreateCounter<long>(InputTokensName, "{token}", "Prompt tokens of each request.");
        _outputTokens = _meter.CreateCounter<long>(OutputTokensName, "{token}", "Tokens generated.");
        _reusedTokens = _meter.CreateCounter<long>(ReusedTokensName, "{token}", "Prompt tokens served from the kept KV cache instead of being evaluated.");
    }

    internal void Record(string modelId, in GenerationStats stats)
    {
        var tag = new KeyValuePair<string, object?>("gen_ai.request.model", modelId);
        _inputTokens.Add(stats.InputTokens, tag);
        _outputTokens.Add(stats.OutputTokens, tag);
        _reusedTokens.Add(stats.ReusedTokens, tag);
        if (stats.TimeToFirstToken is TimeSpan ttft) _timeToFirstToken.Record(ttft.TotalSeconds, tag);
        if (stats.DecodeTokensPerSecond is double rate) _decodeRate.Record(rate, tag);
    }

    public void Dispose()
    {
        if (_ownsMeter) _meter.Dispose();
    }
}

/// <summary>What one request cost: token counts and timings.</summary>
internal readonly record struct GenerationStats(int InputTokens, int OutputTokens, int ReusedTokens, TimeSpan? TimeToFirstToken, double? DecodeTokensPerSecond)
{
    public static double? Rate(int tokensAfterFirst, long firstTimestamp, long lastTimestamp)
    {
        double seconds = Stopwatch.GetElapsedTime(firstTimestamp, lastTimestamp).TotalSeconds;
        return tokensAfterFirst > 0 && seconds > 0 ? tokensAfterFirst / seconds : null;
    }
}

using System.Diagnostics;

namespace OnDeviceLlm.Connector.Diagnostics;

/// <summary>
/// Traces: one activity per generation on the source named <see cref="SourceName"/> (add it to an OpenTelemetry
/// TracerProvider), below MEAI's own chat span when <c>UseOpenTelemetry()</c> is in the pipeline. Tags use the
/// gen_ai semantic conventions where one exists, <c>ondevicellm.*</c> otherwise; an event marks the first token.
/// </summary>
public static class OnDeviceLlmActivity
{
    public const string SourceName = "OnDeviceLlm";
    internal static readonly ActivitySource Source = new(SourceName);

    internal static Activity? Start(string modelId, int promptTokens)
    {
        var activity = Source.StartActivity("generate " + modelId, ActivityKind.Internal);
        activity?.SetTag("gen_ai.request.model", modelId).SetTag("gen_ai.usage.input_tokens", promptTokens);
        return activity;
    }

    internal static void Stop(Activity? activity, in GenerationStats stats, string finishReason)
    {
        if (activity is null) return;
        activity.SetTag("gen_ai.usage.output_tokens", stats.OutputTokens)
            .SetTag("ondevicellm.reused_tokens", stats.ReusedTokens)
            .SetTag("gen_ai.response.finish_reasons", finishReason);
        if (stats.TimeToFirstToken is TimeSpan ttft) activity.SetTag("ondevicellm.time_to_first_token_ms", ttft.TotalMilliseconds);
        if (stats.DecodeTokensPerSecond is double rate) activity.SetTag("ondevicellm.tokens_per_second", rate);
        activity.Stop();
    }
}

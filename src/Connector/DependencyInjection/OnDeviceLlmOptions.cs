using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Inference;
using OnDeviceLlm.Runtime.Quantization;

namespace OnDeviceLlm.Connector.DependencyInjection;

/// <summary>
/// Settings for <c>AddOnDeviceLlm</c>, bindable from the configuration section <see cref="SectionName"/>, e.g.
/// <code>"OnDeviceLlm": { "ModelPath": "models/gemma-2b.odlm", "Threads": 4, "Temperature": 0.7 }</code>
/// </summary>
public sealed class OnDeviceLlmOptions
{
    public const string SectionName = "OnDeviceLlm";

    /// <summary>An .odlm or .gguf file, or a Hugging Face model folder (converted in memory when loaded). Required.</summary>
    public string? ModelPath { get; set; }
    /// <summary>The id reported by responses and metadata; defaults to the model's file or folder name.</summary>
    public string? ModelId { get; set; }
    /// <summary>Compute threads; 0 = the number of physical cores.</summary>
    public int Threads { get; set; }
    public KernelBackend Backend { get; set; } = KernelBackend.Auto;
    /// <summary>Weight storage for a Hugging Face folder converted on load (f32, f16, bf16, int8, q8, q4, mixed); ignored for model files.</summary>
    public string? Quantization { get; set; }
    /// <summary>KV cache element type on the CPU (Auto, F32, F16; see <see cref="LoadOptions.KvCacheType"/>).</summary>
    public KvCacheType KvCacheType { get; set; } = KvCacheType.Auto;
    /// <summary>KV cache positions (prompt plus answer); null = the model's context length.</summary>
    public int? ContextLength { get; set; }
    /// <summary>Answer length limit when a request sets none; null = until EOS or the context is full.</summary>
    public int? MaxOutputTokens { get; set; }
    /// <summary>Defaults for requests that leave them unset; null keeps the client's defaults (see <see cref="OnDeviceChatClientOptions.DefaultSampling"/>).</summary>
    public float? Temperature { get; set; }
    public int? TopK { get; set; }
    public float? TopP { get; set; }
    public float? MinP { get; set; }
    public float? RepetitionPenalty { get; set; }
    /// <summary>Keep the previous request's KV cache for a shared prompt prefix (see <see cref="OnDeviceChatClientOptions.ReusePrefix"/>).</summary>
    public bool ReusePrefix { get; set; } = true;
    /// <summary>Overrides the chat format picked from the model; null = automatic.</summary>
    public ChatTemplates.ChatTemplate? ChatTemplate { get; set; }

    internal LoadOptions ToLoadOptions() => new()
    {
        Threads = Threads,
        Backend = Backend,
        Quantization = Quantization is null ? QuantizationScheme.Source : QuantizationScheme.Parse(Quantization),
        KvCacheType = KvCacheType,
    };

    internal OnDeviceChatClientOptions ToClientOptions()
    {
        var client = new OnDeviceChatClientOptions
        {
            ModelId = ModelId, ContextLength = ContextLength, DefaultMaxOutputTokens = MaxOutputTokens, ReusePrefix = ReusePrefix,
            ChatTemplate = ChatTemplate, DisposeModel = true,
        };
        var s = client.DefaultSampling;
        client.DefaultSampling = s with
        {
            Temperature = Temperature ?? s.Temperature, TopK = TopK ?? s.TopK, TopP = TopP ?? s.TopP, MinP = MinP ?? s.MinP,
            RepetitionPenalty = RepetitionPenalty ?? s.RepetitionPenalty,
        };
        return client;
    }
}

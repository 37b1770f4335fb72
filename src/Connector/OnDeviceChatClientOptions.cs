using OnDeviceLlm.Connector.ChatTemplates;
using OnDeviceLlm.Runtime.Inference;

namespace OnDeviceLlm.Connector;

/// <summary>How an <see cref="OnDeviceChatClient"/> serves its model.</summary>
public sealed class OnDeviceChatClientOptions
{
    /// <summary>The model id reported in responses and metadata; defaults to the model file or folder name.</summary>
    public string? ModelId { get; set; }

    /// <summary>The prompt format; null picks one from the model's stored chat template, vocabulary and architecture.</summary>
    public ChatTemplate? ChatTemplate { get; set; }

    /// <summary>Positions the KV cache holds (prompt plus answer); null uses the model's full context length.</summary>
    public int? ContextLength { get; set; }

    /// <summary>
    /// Sampling used where <see cref="Microsoft.Extensions.AI.ChatOptions"/> leaves a setting unset. The default is
    /// llama.cpp's: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, random seed.
    /// </summary>
    public SamplingOptions DefaultSampling { get; set; } = new() { Temperature = 0.8f, TopK = 40, TopP = 0.95f, MinP = 0.05f };

    /// <summary>The answer length limit when ChatOptions.MaxOutputTokens is unset; null lets an answer run until EOS or the context is full.</summary>
    public int? DefaultMaxOutputTokens { get; set; }

    /// <summary>
    /// Keep the KV caches of earlier requests and evaluate only what follows the longest prefix a prompt shares with
    /// one of them, so a conversation that re-sends its history (or continues by ConversationId) pays only for its
    /// new turn. Off: every request starts from an empty cache.
    /// </summary>
    public bool ReusePrefix { get; set; } = true;

    /// <summary>
    /// The most memory the kept KV caches may take, in bytes (default 1 GiB). Each cache takes
    /// layers × context × KV heads × head_dim × 2 × 4 bytes, or × 2 bytes with an f16 cache (<see cref="Runtime.LoadOptions.KvCacheType"/>,
    /// <see cref="OnDeviceChatClient.KvCacheBytes"/>); as many as
    /// fit are kept, least recently used evicted first, and at least one is always kept.
    /// </summary>
    public long KvCacheMemoryLimit { get; set; } = 1L << 30;

    /// <summary>How many conversations (by ConversationId) are remembered; the least recently used is forgotten first.</summary>
    public int MaxConversations { get; set; } = 256;

    /// <summary>Whether disposing the client disposes the model too.</summary>
    public bool DisposeModel { get; set; }
}

using Microsoft.Extensions.AI;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Inference;
using Xunit;

namespace OnDeviceLlm.Connector.Tests;

/// <summary>The connector over an f16 KV cache: memory accounting by element size, and prefix reuse.</summary>
public sealed class KvCacheTypeTests
{
    private static ChatOptions Greedy(string? conversationId = null) => new() { Temperature = 0f, MaxOutputTokens = 10, ConversationId = conversationId };

    [Fact]
    public void An_f16_cache_takes_half_the_bytes_so_twice_as_many_fit_the_limit()
    {
        using var f32 = LanguageModel.Load(TestModels.ChatModel, new LoadOptions { KvCacheType = KvCacheType.F32 });
        using var f16 = LanguageModel.Load(TestModels.ChatModel, new LoadOptions { KvCacheType = KvCacheType.F16 });
        using var exact = new OnDeviceChatClient(f32, new OnDeviceChatClientOptions { KvCacheMemoryLimit = 4L * 512 * 2 * 16 * 2 * sizeof(float) });
        using var half = new OnDeviceChatClient(f16, new OnDeviceChatClientOptions { KvCacheMemoryLimit = 4L * 512 * 2 * 16 * 2 * sizeof(float) });
        // layers × context × KV heads × head_dim × (keys, values) × element size
        Assert.Equal(2L * 512 * 2 * 16 * 2 * sizeof(float), exact.KvCacheBytes);
        Assert.Equal(2L * 512 * 2 * 16 * 2 * 2, half.KvCacheBytes);
        Assert.Equal(2, exact.MaxKeptCaches);
        Assert.Equal(4, half.MaxKeptCaches);
    }

    [Fact]
    public async Task A_conversation_continues_from_its_f16_cache_with_the_stateless_result()
    {
        using var model = LanguageModel.Load(TestModels.ChatModel, new LoadOptions { KvCacheType = KvCacheType.F16 });
        Assert.Equal(KvCacheType.F16, model.KvCacheType);
        using var stateful = new OnDeviceChatClient(model);
        using var stateless = new OnDeviceChatClient(model, new OnDeviceChatClientOptions { ReusePrefix = false });
        var history = new List<ChatMessage> { new(ChatRole.User, "First question?") };
        var first = await stateful.GetResponseAsync(history, Greedy());
        history.AddMessages(first);
        history.Add(new ChatMessage(ChatRole.User, "Second question?"));

        var second = await stateful.GetResponseAsync([new ChatMessage(ChatRole.User, "Second question?")], Greedy(first.ConversationId));
        var expected = await stateless.GetResponseAsync(history, Greedy());
        Assert.Equal(expected.Text, second.Text);
        Assert.True(second.Usage!.CachedInputTokenCount > first.Usage!.InputTokenCount / 2, $"{second.Usage.CachedInputTokenCount} cached tokens");
    }
}

using Microsoft.Extensions.AI;

namespace OnDeviceLlm.Connector.Tests;

public sealed class ConcurrencyAndCancellationTests(ChatModelFixture fixture) : IClassFixture<ChatModelFixture>
{
    private static List<ChatMessage> Conversation(int i) =>
    [
        new(ChatRole.System, $"You are assistant number {i}."),
        new(ChatRole.User, $"Tell me story {i} about a {(i % 2 == 0 ? "cat" : "dog")}."),
    ];

    private static ChatOptions Options(int i) => i % 2 == 0
        ? new ChatOptions { Temperature = 0f, MaxOutputTokens = 24 }
        : new ChatOptions { Temperature = 1f, Seed = i, MaxOutputTokens = 24 };

    [Fact]
    public async Task Eight_concurrent_conversations_each_equal_their_sequential_result()
    {
        using var client = fixture.CreateClient();
        var sequential = new string[8];
        for (int i = 0; i < 8; i++) sequential[i] = (await client.GetResponseAsync(Conversation(i), Options(i))).Text;

        var concurrent = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => Task.Run(async () =>
        {
            if (i % 3 == 0)
            {
                var text = new System.Text.StringBuilder();
                await foreach (var u in client.GetStreamingResponseAsync(Conversation(i), Options(i))) text.Append(u.Text);
                return text.ToString();
            }
            return (await client.GetResponseAsync(Conversation(i), Options(i))).Text;
        })));

        Assert.Equal(sequential, concurrent);
        Assert.True(sequential.Distinct().Count() > 4, "the conversations should differ from one another");
    }

    [Fact]
    public async Task Concurrent_callers_that_cancel_at_random_leave_the_others_and_the_caches_intact()
    {
        using var probe = fixture.CreateClient();
        using var client = fixture.CreateClient(new OnDeviceChatClientOptions { KvCacheMemoryLimit = 3 * probe.KvCacheBytes });
        var expected = new string[8];
        for (int i = 0; i < 8; i++) expected[i] = (await client.GetResponseAsync(Conversation(i), Options(i))).Text;
        // At least 1 ms a token, so the 24 queued requests take far longer than the 0-30 ms cancellation delays:
        // requests still waiting or decoding when their token fires must exist however fast the machine is.
        client.TokenSampled = _ => Thread.Sleep(1);
        var random = new Random(5);
        var tasks = new List<Task<string?>>();
        for (int round = 0; round < 3; round++)
        {
            for (int i = 0; i < 8; i++)
            {
                int k = i;
                bool cancel = random.Next(3) == 0;
                int after = random.Next(0, 30);
                tasks.Add(Task.Run(async () =>
                {
                    using var cts = new CancellationTokenSource();
                    if (cancel) cts.CancelAfter(after);
                    try { return (await client.GetResponseAsync(Conversation(k), Options(k), cts.Token)).Text; }
                    catch (OperationCanceledException) when (cancel) { return null; }
                }));
            }
        }
        var results = await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromMinutes(2));
        Assert.True(results.Any(r => r is null), "no request was cancelled, so this run proved nothing about cancellation");
        for (int t = 0; t < results.Length; t++)
            if (results[t] is string text) Assert.Equal(expected[t % 8], text);
        client.TokenSampled = null;
        for (int i = 0; i < 8; i++) Assert.Equal(expected[i], (await client.GetResponseAsync(Conversation(i), Options(i))).Text);
    }

    [Fact]
    public async Task Cancellation_stops_generation_within_one_token_and_the_client_stays_usable()
    {
        using var client = fixture.CreateClient();
        var expected = (await client.GetResponseAsync(Conversation(1), Options(0))).Text;
        using var cts = new CancellationTokenSource();
        int sampled = 0;
        client.TokenSampled = n =>
        {
            sampled = n;
            if (n == 3) cts.Cancel();
        };
        var options = new ChatOptions { Temperature = 0f, MaxOutputTokens = 200 };

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in client.GetStreamingResponseAsync(Conversation(1), options, cts.Token)) { }
        });
        Assert.Equal(3, sampled);

        client.TokenSampled = null;
        Assert.Equal(expected, (await client.GetResponseAsync(Conversation(1), Options(0))).Text);
    }

    [Fact]
    public async Task Abandoning_a_stream_early_frees_the_model_for_the_next_request()
    {
        using var client = fixture.CreateClient();
        int sampled = 0;
        // Slowed to at least 2 ms a token, so the 400 tokens cannot all be made before the caller's exit is noticed.
        client.TokenSampled = n => { sampled = n; Thread.Sleep(2); };
        await foreach (var update in client.GetStreamingResponseAsync(Conversation(2), new ChatOptions { Temperature = 0f, MaxOutputTokens = 400 }))
        {
            if (update.Text.Length > 0) break;
        }
        Assert.True(sampled < 400, $"generation ran on to {sampled} tokens after the caller left");
        var next = await client.GetResponseAsync(Conversation(2), new ChatOptions { Temperature = 0f, MaxOutputTokens = 4 }).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(4, next.Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task A_cancelled_wait_in_the_queue_does_not_disturb_the_running_request()
    {
        using var client = fixture.CreateClient();
        string expected = (await client.GetResponseAsync(Conversation(0), Options(0))).Text;
        var gate = new TaskCompletionSource();
        var release = new TaskCompletionSource();
        client.TokenSampled = n => { if (n == 1) { gate.TrySetResult(); release.Task.Wait(); } };
        var running = client.GetResponseAsync(Conversation(0), Options(0));
        await gate.Task;
        using var cts = new CancellationTokenSource();
        var queued = client.GetResponseAsync(Conversation(1), Options(1), cts.Token);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queued);
        release.SetResult();
        client.TokenSampled = null;
        Assert.Equal(expected, (await running).Text);
    }
}

public sealed class PrefixReuseTests(ChatModelFixture fixture) : IClassFixture<ChatModelFixture>
{
    [Fact]
    public async Task A_conversation_that_resends_its_history_evaluates_only_the_new_tokens_with_the_same_result()
    {
        using var reusing = fixture.CreateClient();
        using var fresh = fixture.CreateClient(new OnDeviceChatClientOptions { ReusePrefix = false });
        var options = new ChatOptions { Temperature = 0f, MaxOutputTokens = 12 };
        var history = new List<ChatMessage> { new(ChatRole.System, "Be brief."), new(ChatRole.User, "Hi there.") };
        for (int turn = 0; turn < 4; turn++)
        {
            var a = await reusing.GetResponseAsync(history, options);
            var b = await fresh.GetResponseAsync(history, options);
            Assert.Equal(b.Text, a.Text);
            Assert.Equal(b.Usage!.InputTokenCount, a.Usage!.InputTokenCount);
            Assert.Equal(0, b.Usage.CachedInputTokenCount);
            if (turn > 0)
            {
                // Everything up to the previous answer's last evaluated token is kept.
                int previousPrompt = reusing.RenderPrompt(history.Take(history.Count - 2)).Ids.Length;
                Assert.InRange(a.Usage.CachedInputTokenCount!.Value, previousPrompt, a.Usage.InputTokenCount!.Value - 1);
            }
            history.AddMessages(a);
            history.Add(new ChatMessage(ChatRole.User, $"And turn {turn}?"));
        }
    }
}

public sealed class ConversationTests(ChatModelFixture fixture) : IClassFixture<ChatModelFixture>
{
    private static ChatOptions Greedy(string? conversationId = null) => new() { Temperature = 0f, MaxOutputTokens = 10, ConversationId = conversationId };

    [Fact]
    public async Task A_conversation_id_lets_the_caller_send_only_new_messages_with_the_stateless_result()
    {
        using var stateful = fixture.CreateClient();
        using var stateless = fixture.CreateClient(new OnDeviceChatClientOptions { ReusePrefix = false });
        var history = new List<ChatMessage> { new(ChatRole.User, "First question?") };

        var first = await stateful.GetResponseAsync(history, Greedy());
        Assert.StartsWith("odllm-conv-", first.ConversationId);
        var reference = await stateless.GetResponseAsync(history, Greedy());
        Assert.Equal(reference.Text, first.Text);
        history.AddMessages(reference);
        history.Add(new ChatMessage(ChatRole.User, "Second question?"));

        var second = await stateful.GetResponseAsync([new ChatMessage(ChatRole.User, "Second question?")], Greedy(first.ConversationId));
        var expected = await stateless.GetResponseAsync(history, Greedy());

        Assert.Equal(first.ConversationId, second.ConversationId);
        Assert.Equal(expected.Text, second.Text);
        Assert.Equal(expected.Usage!.InputTokenCount, second.Usage!.InputTokenCount);
        Assert.True(second.Usage.CachedInputTokenCount > first.Usage!.InputTokenCount / 2);
        await Assert.ThrowsAsync<ArgumentException>(() => stateful.GetResponseAsync([new ChatMessage(ChatRole.User, "?")], Greedy("odllm-conv-unknown")));
    }

    [Fact]
    public async Task Kept_caches_are_bounded_by_memory_and_evicted_least_recently_used()
    {
        using var probe = fixture.CreateClient();
        using var client = fixture.CreateClient(new OnDeviceChatClientOptions { KvCacheMemoryLimit = 2 * probe.KvCacheBytes + 1 });
        Assert.Equal(2, client.MaxKeptCaches);
        Assert.Equal(2L * 512 * 2 * 16 * 2 * sizeof(float), probe.KvCacheBytes);
        async Task<ChatResponse> Turn(ChatResponse? previous, string text) =>
            await client.GetResponseAsync([new ChatMessage(ChatRole.User, text)], Greedy(previous?.ConversationId));

        var a1 = await Turn(null, "Alpha alpha alpha alpha alpha alpha.");
        var b1 = await Turn(null, "Bravo bravo bravo bravo bravo bravo.");
        var a2 = await Turn(a1, "Alpha again.");           // A's cache survived B: two are kept
        Assert.True(a2.Usage!.CachedInputTokenCount >= a1.Usage!.InputTokenCount - 1, $"{a2.Usage.CachedInputTokenCount} of {a1.Usage.InputTokenCount}");
        await Turn(null, "Charlie charlie charlie charlie.");  // evicts B, the least recently used
        var b2 = await Turn(b1, "Bravo again.");
        Assert.True(b2.Usage!.CachedInputTokenCount < b1.Usage!.InputTokenCount / 2, $"B was evicted, yet {b2.Usage.CachedInputTokenCount} tokens were reused");
    }
}

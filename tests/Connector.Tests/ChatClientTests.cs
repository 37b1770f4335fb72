using System.Text;
using Microsoft.Extensions.AI;
using OnDeviceLlm.Connector.ChatTemplates;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Inference;

namespace OnDeviceLlm.Connector.Tests;

/// <summary>Conformance tests in the spirit of Microsoft.Extensions.AI's chat-client integration tests, on the synthetic model.</summary>
public sealed class ChatClientTests(ChatModelFixture fixture) : IClassFixture<ChatModelFixture>
{
    private static readonly ChatMessage[] Conversation =
    [
        new(ChatRole.System, "You are terse."),
        new(ChatRole.User, "Name a colour."),
    ];

    private static ChatOptions Greedy(int max) => new() { Temperature = 0f, MaxOutputTokens = max };

    [Fact]
    public async Task Greedy_response_equals_the_runtime_generator_and_reports_exact_usage()
    {
        using var client = fixture.CreateClient();
        var prompt = client.RenderPrompt(Conversation).Ids;
        var expected = fixture.Reference(prompt, new SamplingOptions(), 24);

        var response = await client.GetResponseAsync(Conversation, Greedy(24));

        Assert.Equal(expected.Text, response.Text);
        Assert.Equal(prompt.Length, response.Usage!.InputTokenCount);
        Assert.Equal(expected.Tokens, response.Usage.OutputTokenCount);
        Assert.Equal(prompt.Length + expected.Tokens, response.Usage.TotalTokenCount);
        Assert.Equal(expected.Finish == FinishReason.Stop ? ChatFinishReason.Stop : ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(client.ModelId, response.ModelId);
        Assert.StartsWith("odllm-", response.ResponseId);
        Assert.NotNull(response.CreatedAt);
        Assert.True((double)response.AdditionalProperties![OnDeviceChatClient.TimeToFirstTokenKey]! > 0);
        Assert.True((double)response.AdditionalProperties[OnDeviceChatClient.TokensPerSecondKey]! > 0);
        Assert.Single(response.Messages);
        Assert.Equal(ChatRole.Assistant, response.Messages[0].Role);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task Streaming_updates_concatenate_to_the_non_streaming_text_for_the_same_seed(int seed)
    {
        using var client = fixture.CreateClient();
        var options = new ChatOptions { Temperature = 1.2f, TopK = 0, TopP = 1f, Seed = seed, MaxOutputTokens = 48 };

        var response = await client.GetResponseAsync(Conversation, options);
        var streamed = new StringBuilder();
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync(Conversation, options))
        {
            updates.Add(update);
            streamed.Append(update.Text);
        }

        Assert.Equal(response.Text, streamed.ToString());
        Assert.True(response.Text.Length > 0);
        Assert.Single(updates.Select(u => u.ResponseId).Distinct());
        Assert.Equal(response.FinishReason, updates[^1].FinishReason);
        Assert.Single(updates, u => u.Contents.OfType<UsageContent>().Any());
        // Each piece is whole UTF-16: no lone surrogate of a character split across tokens.
        Assert.All(updates, u => Assert.True(IsWellFormed(u.Text), $"broken text piece: {Escape(u.Text)}"));
    }

    [Fact]
    public async Task The_same_seed_gives_the_same_text_and_other_seeds_differ()
    {
        using var client = fixture.CreateClient();
        ChatOptions Sampled(long seed) => new() { Temperature = 1.5f, TopK = 0, TopP = 1f, Seed = seed, MaxOutputTokens = 32 };
        string a = (await client.GetResponseAsync(Conversation, Sampled(11))).Text;
        string again = (await client.GetResponseAsync(Conversation, Sampled(11))).Text;
        var others = new HashSet<string>();
        for (long s = 12; s < 16; s++) others.Add((await client.GetResponseAsync(Conversation, Sampled(s))).Text);

        Assert.Equal(a, again);
        Assert.True(others.Count > 1 || !others.Contains(a), "different seeds always gave the same text");
    }

    public static TheoryData<string, ChatOptions, SamplingOptions> OptionMappings() => new()
    {
        { "temperature+top_k", new ChatOptions { Temperature = 0.9f, TopK = 5, TopP = 1f, Seed = 3 }, new SamplingOptions { Temperature = 0.9f, TopK = 5, Seed = 3 } },
        { "top_p", new ChatOptions { Temperature = 1f, TopK = 0, TopP = 0.5f, Seed = 4 }, new SamplingOptions { Temperature = 1f, TopP = 0.5f, Seed = 4 } },
        { "frequency", new ChatOptions { Temperature = 0f, FrequencyPenalty = 1.5f }, new SamplingOptions { FrequencyPenalty = 1.5f } },
        { "presence", new ChatOptions { Temperature = 0f, PresencePenalty = 2f }, new SamplingOptions { PresencePenalty = 2f } },
        { "repetition_penalty", new ChatOptions { Temperature = 0f, AdditionalProperties = new() { ["repetition_penalty"] = 3.0 } }, new SamplingOptions { RepetitionPenalty = 3f } },
        { "min_p", new ChatOptions { Temperature = 1f, TopK = 0, TopP = 1f, Seed = 5, AdditionalProperties = new() { ["min_p"] = "0.2" } }, new SamplingOptions { Temperature = 1f, MinP = 0.2f, Seed = 5 } },
    };

    [Theory]
    [MemberData(nameof(OptionMappings))]
    public async Task Chat_options_map_onto_the_runtime_sampler(string name, ChatOptions options, SamplingOptions expected)
    {
        // Every default the client would add is turned off, so only the mapped options shape the result.
        using var client = fixture.CreateClient(new OnDeviceChatClientOptions { DefaultSampling = new SamplingOptions() });
        options.MaxOutputTokens = 32;
        var prompt = client.RenderPrompt(Conversation).Ids;
        var reference = fixture.Reference(prompt, expected, 32);
        var greedy = fixture.Reference(prompt, new SamplingOptions(), 32);

        var response = await client.GetResponseAsync(Conversation, options);

        Assert.Equal(reference.Text, response.Text);
        Assert.True(name.StartsWith("temperature", StringComparison.Ordinal) || name is "top_p" or "min_p" || reference.Text != greedy.Text,
            $"{name}: the option did not change greedy output, so this case proves nothing");
    }

    [Fact]
    public async Task Stop_sequences_end_the_answer_before_the_stop_text_in_both_modes()
    {
        using var client = fixture.CreateClient();
        string full = (await client.GetResponseAsync(Conversation, Greedy(40))).Text;
        Assert.True(full.Length >= 12, $"greedy text too short for the test: {Escape(full)}");
        string stop = full.Substring(8, 3);
        int cut = full.IndexOf(stop, StringComparison.Ordinal);
        var options = Greedy(40);
        options.StopSequences = [stop];

        var response = await client.GetResponseAsync(Conversation, options);
        var pieces = new List<string>();
        await foreach (var u in client.GetStreamingResponseAsync(Conversation, options)) pieces.Add(u.Text);

        Assert.Equal(full[..cut], response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(full[..cut], string.Concat(pieces));
        Assert.DoesNotContain(pieces, p => p.Contains(stop, StringComparison.Ordinal));
    }

    [Fact]
    public async Task MaxOutputTokens_limits_the_answer_and_reports_length()
    {
        using var client = fixture.CreateClient();
        var response = await client.GetResponseAsync(Conversation, Greedy(3));
        Assert.Equal(3, response.Usage!.OutputTokenCount);
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
    }

    [Fact]
    public async Task Bad_options_are_rejected_with_a_clear_exception()
    {
        using var client = fixture.CreateClient();
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.GetResponseAsync(Conversation, new ChatOptions { Temperature = -1f }));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 0 }));
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Conversation, new ChatOptions { ModelId = "other" }));
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Conversation,
            new ChatOptions { AdditionalProperties = new() { ["min_p"] = "lots" } }));
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync([]));
        // The client is still fine afterwards.
        Assert.Equal(2, (await client.GetResponseAsync(Conversation, Greedy(2))).Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task A_prompt_longer_than_the_context_raises_an_inference_exception()
    {
        using var client = fixture.CreateClient(new OnDeviceChatClientOptions { ContextLength = 16 });
        var ex = await Assert.ThrowsAsync<InferenceException>(() => client.GetResponseAsync(Conversation, Greedy(4)));
        Assert.Contains("context", ex.Message);
        using var roomy = fixture.CreateClient(new OnDeviceChatClientOptions { ContextLength = 64 });
        var response = await roomy.GetResponseAsync(Conversation, Greedy(1000));
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        // The last sampled token never needs a cache slot, so a full context yields one token more than it holds.
        Assert.Equal(65, response.Usage!.TotalTokenCount);
    }

    [Fact]
    public void GetService_returns_metadata_the_model_and_the_client()
    {
        using var client = fixture.CreateClient(new OnDeviceChatClientOptions { ModelId = "tiny" });
        var metadata = client.GetService<ChatClientMetadata>();
        Assert.Equal("OnDeviceLlm", metadata!.ProviderName);
        Assert.Equal("tiny", metadata.DefaultModelId);
        Assert.Same(fixture.Model, client.GetService<LanguageModel>());
        Assert.Same(client, client.GetService<OnDeviceChatClient>());
        Assert.IsType<Llama2ChatTemplate>(client.GetService<ChatTemplate>());
        Assert.Null(client.GetService<ChatClientMetadata>("some key"));
    }

    internal static bool IsWellFormed(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i])) { if (i + 1 >= s.Length || !char.IsLowSurrogate(s[i + 1])) return false; i++; }
            else if (char.IsLowSurrogate(s[i])) return false;
        }
        return true;
    }

    internal static string Escape(string s) => string.Concat(s.Select(c => c < 0x20 || c > 0x7e ? $"\\u{(int)c:x4}" : c.ToString()));
}


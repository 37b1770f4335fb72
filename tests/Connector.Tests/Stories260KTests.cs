using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using OnDeviceLlm.Connector.ChatTemplates;
using OnDeviceLlm.Runtime;

namespace OnDeviceLlm.Connector.Tests;

/// <summary>The real trained stories260K (its GGUF carries the llama2.c tokenizer) behind the chat client.</summary>
public sealed class Stories260KTests : IDisposable
{
    private static readonly string Folder = Path.Combine(TestModels.Shared, "models", "stories260K");
    private readonly LanguageModel _model = LanguageModel.Load(Path.Combine(Folder, "stories260K.gguf"));

    /// <summary>No chat markup at all: BOS, then the user's text, as llama2.c's run prompts it.</summary>
    private static readonly ChatTemplate Raw = ChatTemplate.Create("raw", (messages, tokens, _) => tokens.Bos + string.Concat(messages.Select(m => m.Text)));

    [Fact]
    public async Task Greedy_completion_from_bos_reproduces_llama2c_published_text_streamed_and_not()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Folder, "reference-outputs.json")));
        string expected = doc.RootElement.GetProperty("upstream_references")[1].GetProperty("expected_text").GetString()!;
        using var client = new OnDeviceChatClient(_model, new OnDeviceChatClientOptions { ChatTemplate = Raw });
        ChatMessage[] empty = [new(ChatRole.User, "")];
        var options = new ChatOptions { Temperature = 0f, MaxOutputTokens = 200 };

        var response = await client.GetResponseAsync(empty, options);
        var streamed = new StringBuilder();
        await foreach (var u in client.GetStreamingResponseAsync(empty, options)) streamed.Append(u.Text);

        Assert.Equal(expected, response.Text);
        Assert.Equal(expected, streamed.ToString());
        Assert.Equal(1, response.Usage!.InputTokenCount);
        Assert.Equal(200, response.Usage.OutputTokenCount);
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
    }

    [Fact]
    public async Task The_default_chat_format_is_llama2_and_sampled_chat_streams_consistently()
    {
        using var client = new OnDeviceChatClient(_model);
        Assert.IsType<Llama2ChatTemplate>(client.Template);
        ChatMessage[] chat = [new(ChatRole.System, "Tell stories."), new(ChatRole.User, "Once upon a time")];
        Assert.Equal("<s>[INST] <<SYS>>\nTell stories.\n<</SYS>>\n\nOnce upon a time [/INST]", client.RenderPrompt(chat).Text);
        Assert.Equal(1, client.RenderPrompt(chat).Ids[0]);
        var options = new ChatOptions { Temperature = 0.8f, Seed = 42, MaxOutputTokens = 60 };

        var response = await client.GetResponseAsync(chat, options);
        var streamed = new StringBuilder();
        await foreach (var u in client.GetStreamingResponseAsync(chat, options)) streamed.Append(u.Text);

        Assert.Equal(response.Text, streamed.ToString());
        Assert.True(response.Text.Count(char.IsLetter) > 20, response.Text);
    }

    [Fact]
    public async Task Tool_prompts_that_once_overflowed_attention_now_give_a_forced_call()
    {
        // This prompt drove an attention score past exp's float range at position 269, and the whole logits row
        // turned NaN, until the softmax subtracted its maximum.
        using var client = new OnDeviceChatClient(_model);
        var now = AIFunctionFactory.Create(() => "now", "utc_now", "Returns the time.");
        var add = AIFunctionFactory.Create((string? time, double hours) => "x", "add_hours", "Adds hours to an ISO 8601 time.");
        ChatMessage[] chat = [new(ChatRole.System, "You are a helpful assistant. Use the clock tools to answer questions about time."), new(ChatRole.User, "What time is it in UTC?")];
        for (int seed = 0; seed < 3; seed++)
        {
            var response = await client.GetResponseAsync(chat, new ChatOptions { Tools = [now, add], ToolMode = ChatToolMode.RequireAny, Seed = seed, MaxOutputTokens = 60 });
            Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
            Assert.True(response.Usage!.InputTokenCount > 269);
        }
    }

    public void Dispose() => _model.Dispose();
}

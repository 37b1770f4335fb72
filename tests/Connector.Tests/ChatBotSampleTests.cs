using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using OnDeviceLlm.Samples.ChatBot;

namespace OnDeviceLlm.Connector.Tests;

public sealed class ChatBotSampleTests
{
    /// <summary>Records what the bot sends and answers "word0 word1 …", slowly when asked, so Ctrl+C can land mid-answer.</summary>
    private sealed class RecordingClient(int words, TimeSpan delay) : IChatClient
    {
        public List<List<ChatMessage>> Requests { get; } = [];
        public TaskCompletionSource FirstWord { get; } = new();

        public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
            GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

        public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
            [EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            Requests.Add([.. messages]);
            for (int i = 0; i < words; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                yield return new ChatResponseUpdate(ChatRole.Assistant, $"word{i} ");
                FirstWord.TrySetResult();
                await Task.Delay(delay, cancellationToken);
            }
            yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(new UsageDetails { InputTokenCount = 10, OutputTokenCount = words })])
            {
                FinishReason = ChatFinishReason.Stop,
                AdditionalProperties = new() { [OnDeviceChatClient.TimeToFirstTokenKey] = 12.5, [OnDeviceChatClient.TokensPerSecondKey] = 100.0 },
            };
        }

        public object? GetService(Type serviceType, object? serviceKey = null) => null;
        public void Dispose() { }
    }

    [Fact]
    public async Task Commands_shape_the_conversation_and_answers_stream_with_their_timings()
    {
        var client = new RecordingClient(3, TimeSpan.Zero);
        var output = new StringWriter();
        var bot = new ChatBotSession(client, output, new ChatOptions());
        await bot.RunAsync(new StringReader("/system Be kind.\nHi\nMore\n/reset\nAgain\n/stats\n/quit\nnever read\n"));

        Assert.Equal(3, client.Requests.Count);
        Assert.Equal(["system:Be kind.", "user:Hi"], client.Requests[0].Select(m => $"{m.Role}:{m.Text}"));
        Assert.Equal(["system:Be kind.", "user:Hi", "assistant:word0 word1 word2 ", "user:More"], client.Requests[1].Select(m => $"{m.Role}:{m.Text}"));
        Assert.Equal(["system:Be kind.", "user:Again"], client.Requests[2].Select(m => $"{m.Role}:{m.Text}"));
        string text = output.ToString();
        Assert.Contains("word0 word1 word2 \n[3 tokens, first after 12.5 ms, 100.0 tokens/s", text);
        Assert.Contains("3 answers, 0 stopped; 30 prompt tokens", text);
    }

    [Fact]
    public async Task Cancelling_stops_the_answer_but_not_the_session()
    {
        var client = new RecordingClient(1000, TimeSpan.FromMilliseconds(20));
        var output = new StringWriter();
        var bot = new ChatBotSession(client, output, new ChatOptions());
        var input = new ScriptedInput();
        var run = bot.RunAsync(input);
        input.Send("Talk forever");
        await client.FirstWord.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(bot.CancelAnswer());
        input.Send("/stats");
        input.Send("/quit");
        await run.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Contains(" [stopped]", output.ToString());
        Assert.Contains("0 answers, 1 stopped", output.ToString());
        Assert.False(bot.CancelAnswer());
    }

    [Fact]
    public async Task The_bot_runs_on_the_real_client()
    {
        using var model = TestModels.LoadChatModel();
        using var client = new OnDeviceChatClient(model);
        var output = new StringWriter();
        await new ChatBotSession(client, output, new ChatOptions { MaxOutputTokens = 5, Temperature = 0f }).RunAsync(new StringReader("Hi\nAnd?\n"));
        Assert.Equal(2, output.ToString().Split('\n').Count(l => l.StartsWith('[') && l.Contains("5 tokens") && l.Contains("finish: length")));
    }

    /// <summary>Console input whose lines arrive when the test sends them.</summary>
    private sealed class ScriptedInput : TextReader
    {
        private readonly System.Threading.Channels.Channel<string> _lines = System.Threading.Channels.Channel.CreateUnbounded<string>();
        public void Send(string line) => _lines.Writer.TryWrite(line);
        public override async ValueTask<string?> ReadLineAsync(CancellationToken cancellationToken) => await _lines.Reader.ReadAsync(cancellationToken);
        public override Task<string?> ReadLineAsync() => ReadLineAsync(CancellationToken.None).AsTask();
    }
}

public sealed class ChatBotDefaultModelTests
{
    [Fact]
    public async Task The_built_in_demo_model_loads_and_chats()
    {
        string path = DefaultModel.CreateSynthetic(Path.Combine(TestModels.ScratchRoot, "demo.odlm"));
        using var model = OnDeviceLlm.Runtime.LanguageModel.Load(path);
        Assert.Equal(257, model.RequireTokenizer().VocabSize);
        Assert.Equal("héllo 😀", model.RequireTokenizer().Decode(model.RequireTokenizer().Encode("héllo 😀").ToArray()));
        using var client = new OnDeviceChatClient(model);
        var output = new StringWriter();
        await new ChatBotSession(client, output, new Microsoft.Extensions.AI.ChatOptions { MaxOutputTokens = 8, Temperature = 0f }).RunAsync(new StringReader("Hi\n"));
        Assert.Contains("[8 tokens", output.ToString());
    }
}

using System.Text;
using Microsoft.Extensions.AI;
using OnDeviceLlm.Connector;

namespace OnDeviceLlm.Samples.ChatBot;

/// <summary>
/// The chat loop, apart from the console so it can be driven by a test: reads lines, streams answers, and
/// handles the commands. <see cref="CancelAnswer"/> (wired to Ctrl+C) stops the answer being written, not the loop.
/// </summary>
internal sealed class ChatBotSession(IChatClient client, TextWriter output, ChatOptions options)
{
    private readonly List<ChatMessage> _history = [];
    private string? _system;
    private CancellationTokenSource? _answer;
    private int _turns, _cancelled;
    private long _inputTokens, _outputTokens, _cachedTokens;
    private double _ttftTotalMs, _rateTotal;
    private int _rateCount;

    public const string Help = "Commands: /reset (forget the conversation), /system <text> (set the system prompt and reset), /stats, /help, /quit. Ctrl+C stops an answer.";

    /// <summary>Stops the answer being generated, if any; returns whether there was one.</summary>
    public bool CancelAnswer()
    {
        var answer = Volatile.Read(ref _answer);
        if (answer is null) return false;
        try { answer.Cancel(); } catch (ObjectDisposedException) { return false; }
        return true;
    }

    public async Task RunAsync(TextReader input)
    {
        while (true)
        {
            output.Write("> ");
            string? line = await input.ReadLineAsync();
            if (line is null || line.Trim() is "/quit" or "/exit") return;
            line = line.Trim();
            if (line.Length == 0) continue;
            if (line.StartsWith('/')) { Command(line); continue; }
            await AnswerAsync(line);
        }
    }

    private void Command(string line)
    {
        int space = line.IndexOf(' ');
        string name = space < 0 ? line : line[..space];
        string argument = space < 0 ? "" : line[(space + 1)..].Trim();
        switch (name)
        {
            case "/reset":
                _history.Clear();
                output.WriteLine("(conversation cleared" + (_system is null ? ")" : "; the system prompt stays)"));
                break;
            case "/system":
                _system = argument.Length > 0 ? argument : null;
                _history.Clear();
                output.WriteLine(_system is null ? "(system prompt removed; conversation cleared)" : "(system prompt set; conversation cleared)");
                break;
            case "/stats":
                output.WriteLine(Stats());
                break;
            case "/help":
                output.WriteLine(Help);
                break;
            default:
                output.WriteLine($"Unknown command {name}. {Help}");
                break;
        }
    }

    private async Task AnswerAsync(string text)
    {
        var messages = new List<ChatMessage>(_history.Count + 2);
        if (_system is not null) messages.Add(new ChatMessage(ChatRole.System, _system));
        messages.AddRange(_history);
        messages.Add(new ChatMessage(ChatRole.User, text));

        using var answer = new CancellationTokenSource();
        Volatile.Write(ref _answer, answer);
        var reply = new StringBuilder();
        var updates = new List<ChatResponseUpdate>();
        try
        {
            await foreach (var update in client.GetStreamingResponseAsync(messages, options, answer.Token))
            {
                output.Write(update.Text);
                reply.Append(update.Text);
                updates.Add(update);
            }
            output.WriteLine();
            var response = updates.ToChatResponse();
            Record(response);
            _history.Add(new ChatMessage(ChatRole.User, text));
            _history.AddRange(response.Messages);
        }
        catch (OperationCanceledException) when (answer.IsCancellationRequested)
        {
            _cancelled++;
            // The partial answer stays in the conversation, as a user who stopped it has read it.
            output.WriteLine(" [stopped]");
            _history.Add(new ChatMessage(ChatRole.User, text));
            if (reply.Length > 0) _history.Add(new ChatMessage(ChatRole.Assistant, reply.ToString()));
        }
        finally
        {
            Volatile.Write(ref _answer, null);
        }
    }

    private void Record(ChatResponse response)
    {
        _turns++;
        var usage = response.Usage;
        _inputTokens += usage?.InputTokenCount ?? 0;
        _outputTokens += usage?.OutputTokenCount ?? 0;
        _cachedTokens += usage?.CachedInputTokenCount ?? 0;
        double? ttft = Number(response, OnDeviceChatClient.TimeToFirstTokenKey);
        double? rate = Number(response, OnDeviceChatClient.TokensPerSecondKey);
        if (ttft is double t) _ttftTotalMs += t;
        if (rate is double r) { _rateTotal += r; _rateCount++; }
        output.WriteLine(FormattableString.Invariant(
            $"[{usage?.OutputTokenCount} tokens, first after {ttft:F1} ms, {rate:F1} tokens/s, {usage?.CachedInputTokenCount} of {usage?.InputTokenCount} prompt tokens reused, finish: {response.FinishReason}]"));
    }

    private string Stats()
    {
        var metadata = client.GetService<ChatClientMetadata>();
        double meanTtft = _turns > 0 ? _ttftTotalMs / _turns : 0, meanRate = _rateCount > 0 ? _rateTotal / _rateCount : 0;
        return FormattableString.Invariant($"model {metadata?.DefaultModelId} ({metadata?.ProviderName}); {_turns} answers, {_cancelled} stopped; {_inputTokens} prompt tokens ({_cachedTokens} reused), {_outputTokens} generated; mean first token {meanTtft:F1} ms, mean {meanRate:F1} tokens/s; {_history.Count} messages in the conversation{(_system is null ? "" : ", with a system prompt")}");
    }

    // Depending on the updates' message ids, ToChatResponse files the final update's properties under the response or its last message.
    private static double? Number(ChatResponse response, string key) =>
        response.AdditionalProperties?.TryGetValue(key, out object? v) == true && v is double d ? d
        : response.Messages.LastOrDefault()?.AdditionalProperties?.TryGetValue(key, out v) == true && v is double m ? m : null;
}

using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using OnDeviceLlm.Connector.ChatTemplates;
using OnDeviceLlm.Connector.Diagnostics;
using OnDeviceLlm.Connector.Tools;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Inference;

namespace OnDeviceLlm.Connector;

/// <summary>
/// An <see cref="IChatClient"/> that runs a <see cref="LanguageModel"/> in process.
/// <para>
/// ChatOptions honoured: MaxOutputTokens, Temperature (0 = greedy), TopP, TopK, Seed, StopSequences,
/// FrequencyPenalty, PresencePenalty, ModelId (must name this client's model), ResponseFormat, Tools with ToolMode,
/// and in AdditionalProperties <c>min_p</c> (float in [0, 1]) and <c>repetition_penalty</c> (float &gt; 0, HF
/// semantics). Settings left unset come from <see cref="OnDeviceChatClientOptions.DefaultSampling"/>.
/// ConversationId follows the stateful contract: every response carries one, and a caller that passes it back
/// sends only its new messages (the client keeps the conversation, bounded by MaxConversations).
/// </para>
/// <para>
/// JSON: <see cref="ChatResponseFormat.Json"/> asks for a JSON object and a JSON grammar masks the logits at every
/// step, so the text is always one valid JSON object; a schema goes into the prompt and into the grammar (the subset
/// in <c>Tools/SchemaGrammar.cs</c>). If the token budget runs out first, the shortest closing text is appended
/// (finish reason Length). Tools use one convention for every
/// family (see <c>Tools/ToolPrompt.cs</c>): with ToolMode Auto the model may answer or call (an answer that begins
/// as a call is held back and finished under the call grammar); with RequireAny or
/// RequireSpecific a grammar forces exactly one call to an offered tool, arguments following its schema, returned as
/// <see cref="FunctionCallContent"/> with finish reason ToolCalls (no text is streamed for it).
/// </para>
/// <para>
/// Requests are served one at a time in arrival order (one forward pass at a time); concurrent callers wait their
/// turn. KV caches of earlier requests are kept (KvCacheMemoryLimit, least recently used evicted) and a prompt
/// continues the one it shares the longest prefix with. Generation runs on a thread-pool thread, so a caller's synchronization context is never
/// blocked. A stream's final update carries <see cref="UsageContent"/> and, in AdditionalProperties,
/// <see cref="TimeToFirstTokenKey"/> (milliseconds) and <see cref="TokensPerSecondKey"/>; GetResponseAsync puts
/// them in the response's AdditionalProperties.
/// </para>
/// </summary>
public sealed partial class OnDeviceChatClient : IChatClient
{
    public const string ProviderName = "OnDeviceLlm";
    /// <summary>AdditionalProperties key (ChatOptions): min-p filter, a number in [0, 1].</summary>
    public const string MinPKey = "min_p";
    /// <summary>AdditionalProperties key (ChatOptions): HF repetition penalty, a number &gt; 0 (1 = off).</summary>
    public const string RepetitionPenaltyKey = "repetition_penalty";
    /// <summary>AdditionalProperties key (responses): time to first token in milliseconds.</summary>
    public const string TimeToFirstTokenKey = "time_to_first_token_ms";
    /// <summary>AdditionalProperties key (responses): generated tokens per second after the first token.</summary>
    public const string TokensPerSecondKey = "tokens_per_second";

    private readonly LanguageModel _model;
    private readonly OnDeviceChatClientOptions _options;
    private readonly PromptEncoder _encoder;
    private readonly ChatClientMetadata _metadata;
    private readonly ILogger _logger;
    private readonly OnDeviceLlmMetrics _metrics;
    private readonly bool _ownsMetrics;
    private readonly SemaphoreSlim _gate = new(1, 1);
    // The kept KV caches; touched only under _gate.
    private readonly KvCachePool _pool;
    private readonly ConversationStore _conversations;
    private float[]? _logits;
    private string?[]? _tokenTexts;
    private volatile bool _disposed;

    /// <summary>Test hook: called on the generating thread after each sampled token with the count so far.</summary>
    internal Action<int>? TokenSampled { get; set; }

    /// <param name="model">A loaded model with a tokenizer.</param>
    /// <param name="options">Serving options; null takes the defaults.</param>
    /// <param name="logger">Receives one debug line per request and errors; null logs nothing.</param>
    /// <param name="metrics">Where measurements go; null creates instruments on a meter of the client's own.</param>
    /// <exception cref="TokenizerException">The model has no tokenizer.</exception>
    public OnDeviceChatClient(LanguageModel model, OnDeviceChatClientOptions? options = null, ILogger? logger = null, OnDeviceLlmMetrics? metrics = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        _options = options ?? new OnDeviceChatClientOptions();
        if (_options.ContextLength is int n && (n <= 0 || n > model.Config.ContextLength))
            throw new ArgumentOutOfRangeException(nameof(options), n, $"ContextLength must be between 1 and the model's {model.Config.ContextLength}.");
        if (_options.DefaultMaxOutputTokens is <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), _options.DefaultMaxOutputTokens, "DefaultMaxOutputTokens must be positive.");
        _options.DefaultSampling.Validate();
        if (_options.KvCacheMemoryLimit <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), _options.KvCacheMemoryLimit, "KvCacheMemoryLimit must be positive.");
        if (_options.MaxConversations <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), _options.MaxConversations, "MaxConversations must be positive.");
        var c = model.Config;
        KvCacheBytes = KvCache.ByteSize(c, _options.ContextLength ?? c.ContextLength, model.KvCacheType);
        int caches = _options.ReusePrefix ? (int)Math.Clamp(_options.KvCacheMemoryLimit / KvCacheBytes, 1, 1024) : 1;
        _pool = new KvCachePool(() => _model.CreateSession(_options.ContextLength), caches);
        _conversations = new ConversationStore(_options.MaxConversations);
        var tokenizer = model.RequireTokenizer();
        Template = _options.ChatTemplate ?? ChatTemplateSelector.Select(model.Config.Architecture, model.Special.ChatTemplate,
            token => tokenizer.TokenToId(token) is not null);
        _encoder = new PromptEncoder(model, Template);
        ModelId = _options.ModelId ?? DefaultModelId(model.Source);
        _metadata = new ChatClientMetadata(ProviderName, null, ModelId);
        _logger = logger ?? NullLogger.Instance;
        _ownsMetrics = metrics is null;
        _metrics = metrics ?? new OnDeviceLlmMetrics();
    }

    public string ModelId { get; }

    /// <summary>The memory one KV cache takes (keys and values of every layer for the whole context), in bytes.</summary>
    public long KvCacheBytes { get; }

    /// <summary>How many KV caches are kept at most (from <see cref="OnDeviceChatClientOptions.KvCacheMemoryLimit"/>).</summary>
    public int MaxKeptCaches => _pool.Capacity;
    public LanguageModel Model => _model;
    public ChatTemplate Template { get; }

    /// <summary>The prompt this client would evaluate for <paramref name="messages"/>, as text and token ids.</summary>
    public (string Text, int[] Ids) RenderPrompt(IEnumerable<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        string text = Template.Render(messages as IReadOnlyList<ChatMessage> ?? [.. messages], _encoder.Tokens, addGenerationPrompt: true);
        return (text, _encoder.Encode(text));
    }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var response = await GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken).ConfigureAwait(false);
        // ToChatResponse files update properties under the message; the timings describe the whole response.
        if (response.Messages.Count > 0 && response.Messages[^1].AdditionalProperties is { } timings) response.AdditionalProperties = timings;
        return response;
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(messages);
        // Stateful contract: with a ConversationId the caller sends only new messages, appended to the stored ones.
        string conversationId;
        List<ChatMessage> conversation;
        if (options?.ConversationId is string id)
        {
            conversation = _conversations.Get(id) ?? throw new ArgumentException(
                $"Conversation '{id}' is unknown to this client: it was never returned by it, or was forgotten (at most {_conversations.Capacity} are kept); send the full history without ConversationId.", nameof(options));
            conversation.AddRange(messages);
            conversationId = id;
        }
        else
        {
            conversation = [.. messages];
            conversationId = "odllm-conv-" + Guid.NewGuid().ToString("N");
        }
        var request = CreateRequest(conversation, options);
        string responseId = "odllm-" + Guid.NewGuid().ToString("N");
        var created = DateTimeOffset.UtcNow;
        var channel = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task<Outcome> producer;
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            producer = Task.Run(() => Produce(request, channel.Writer, stop.Token), CancellationToken.None);
        }
        catch
        {
            _gate.Release();
            stop.Dispose();
            throw;
        }
        var answer = new System.Text.StringBuilder();
        try
        {
            await foreach (string piece in channel.Reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
            {
                answer.Append(piece);
                yield return new ChatResponseUpdate(ChatRole.Assistant, piece)
                {
                    ResponseId = responseId, MessageId = responseId, ConversationId = conversationId, CreatedAt = created, ModelId = ModelId,
                };
            }
            var outcome = await producer.ConfigureAwait(false);
            var s = outcome.Stats;
            var contents = new List<AIContent>(1 + (outcome.Calls?.Count ?? 0));
            if (outcome.Calls is not null) contents.AddRange(outcome.Calls);
            contents.Add(new UsageContent(new UsageDetails
            {
                InputTokenCount = s.InputTokens, CachedInputTokenCount = s.ReusedTokens, OutputTokenCount = s.OutputTokens, TotalTokenCount = s.InputTokens + s.OutputTokens,
            }));
            var reply = new ChatMessage(ChatRole.Assistant, answer.ToString()) { MessageId = responseId };
            if (outcome.Calls is not null) foreach (var call in outcome.Calls) reply.Contents.Add(call);
            conversation.Add(reply);
            _conversations.Save(conversationId, conversation);
            var final = new ChatResponseUpdate(ChatRole.Assistant, contents)
            {
                ResponseId = responseId, MessageId = responseId, ConversationId = conversationId, CreatedAt = created, ModelId = ModelId,
                FinishReason = outcome.FinishReason,
                AdditionalProperties = new()
                {
                    [TimeToFirstTokenKey] = s.TimeToFirstToken?.TotalMilliseconds,
                    [TokensPerSecondKey] = s.DecodeTokensPerSecond,
                },
            };
            yield return final;
        }
        finally
        {
            // The caller may stop reading early: stop the producer at its next token and wait, so the
            // next request finds the model free and the cache consistent.
            stop.Cancel();
            try { await producer.ConfigureAwait(false); }
            catch (Exception) { /* its exception already reached the caller through the channel */ }
            stop.Dispose();
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(LanguageModel)) return _model;
        if (serviceType == typeof(ChatTemplate)) return Template;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        // Wait for a running generation so the weights are never unmapped under it.
        _gate.Wait();
        if (_options.DisposeModel) _model.Dispose();
        if (_ownsMetrics) _metrics.Dispose();
    }

    // Constraint creates the grammar the output must follow (null = free text); HideText marks a forced tool call,
    // returned as FunctionCallContent rather than streamed; ToolNames are the tools an answer may call (null = none);
    // CallConstraint (ToolMode.Auto) is the call grammar that takes over once an answer starts as a call.
    private sealed record Request(int[] Prompt, SamplingOptions Sampling, int MaxOutputTokens, IReadOnlyList<string> StopSequences,
        Func<OutputConstraint>? Constraint, bool HideText, IReadOnlySet<string>? ToolNames, Func<OutputConstraint>? CallConstraint);

    private sealed record OutputPlan(string? Instructions, Func<OutputConstraint>? Constraint, bool HideText = false,
        IReadOnlySet<string>? ToolNames = null, Func<OutputConstraint>? CallConstraint = null);

    private sealed record Outcome(ChatFinishReason FinishReason, GenerationStats Stats, List<FunctionCallContent>? Calls);

    private Request CreateRequest(IReadOnlyList<ChatMessage> list, ChatOptions? options)
    {
        if (list.Count == 0) throw new ArgumentException("At least one message is required.", "messages");
        if (options?.ModelId is string id && id != ModelId)
            throw new ArgumentException($"This client serves model '{ModelId}', but ChatOptions.ModelId asks for '{id}'.", nameof(options));

        var sampling = _options.DefaultSampling;
        if (options is not null)
        {
            sampling = sampling with
            {
                Temperature = options.Temperature ?? sampling.Temperature,
                TopP = options.TopP ?? sampling.TopP,
                TopK = options.TopK ?? sampling.TopK,
                FrequencyPenalty = options.FrequencyPenalty ?? sampling.FrequencyPenalty,
                PresencePenalty = options.PresencePenalty ?? sampling.PresencePenalty,
                Seed = options.Seed is long seed ? unchecked((int)(seed ^ (seed >> 32))) : sampling.Seed,
                MinP = Number(options.AdditionalProperties, MinPKey) ?? sampling.MinP,
                RepetitionPenalty = Number(options.AdditionalProperties, RepetitionPenaltyKey) ?? sampling.RepetitionPenalty,
            };
        }
        sampling.Validate();

        int? max = options?.MaxOutputTokens ?? _options.DefaultMaxOutputTokens;
        if (max is <= 0) throw new ArgumentOutOfRangeException(nameof(options), max, $"MaxOutputTokens must be positive, but it is {max}.");

        var plan = OutputRules(options);
        var stops = new List<string>(plan.Constraint is null ? Template.StopSequences : []);
        if (options?.StopSequences is { } extra)
        {
            foreach (string s in extra)
            {
                if (string.IsNullOrEmpty(s)) throw new ArgumentException("StopSequences cannot contain an empty string.", nameof(options));
                stops.Add(s);
            }
        }
        var (_, prompt) = RenderPrompt(ToolPrompt.Rewrite(list, plan.Instructions));
        return new Request(prompt, sampling, max ?? int.MaxValue, stops, plan.Constraint, plan.HideText, plan.ToolNames, plan.CallConstraint);
    }

    /// <summary>What ResponseFormat and Tools/ToolMode ask of the answer: prompt instructions, a grammar, how calls come back.</summary>
    private static OutputPlan OutputRules(ChatOptions? options)
    {
        string? instructions = null;
        Func<OutputConstraint>? constraint = null;
        if (options?.ResponseFormat is ChatResponseFormatJson json)
        {
            instructions = "Reply with a single JSON object and nothing else.";
            constraint = () => new JsonGrammar();
            if (json.Schema is JsonElement schema)
            {
                instructions += " It must follow this JSON Schema: " + schema.GetRawText();
                var node = SchemaNode.Parse(schema);
                if (node.Kind != SchemaNode.NodeKind.Any) constraint = () => new SchemaGrammar(node);
            }
        }
        if (options?.Tools is not { Count: > 0 } tools || options.ToolMode is NoneChatToolMode) return new OutputPlan(instructions, constraint);

        var functions = new List<AIFunctionDeclaration>(tools.Count);
        foreach (var tool in tools)
        {
            functions.Add(tool as AIFunctionDeclaration
                ?? throw new NotSupportedException($"Tool '{tool.Name}' is a {tool.GetType().Name}; OnDeviceChatClient runs only function tools (AIFunctionDeclaration)."));
        }
        var names = new HashSet<string>(functions.Select(f => f.Name), StringComparer.Ordinal);
        if (options.ToolMode is RequiredChatToolMode required)
        {
            var allowed = required.RequiredFunctionName is string only
                ? names.Contains(only) ? functions.Where(f => f.Name == only).Take(1).ToList() : throw new ArgumentException($"ToolMode requires '{only}', which is not among ChatOptions.Tools.", nameof(options))
                : functions;
            return new OutputPlan(Join(instructions, ToolPrompt.Describe(functions, required: true)), CallGrammar(allowed), HideText: true, names);
        }
        // A JSON response format and optional calls cannot both constrain the text; the format wins.
        return new OutputPlan(Join(instructions, ToolPrompt.Describe(functions, required: false)), constraint, ToolNames: names,
            CallConstraint: constraint is null ? CallGrammar(functions) : null);

        // Arguments follow each function's parameter schema, so the call binds; a schema that is not an object accepts any object.
        static Func<OutputConstraint> CallGrammar(IReadOnlyList<AIFunctionDeclaration> allowed)
        {
            string[] allowedNames = [.. allowed.Select(f => f.Name)];
            SchemaNode?[] schemas = [.. allowed.Select(f => SchemaNode.Parse(f.JsonSchema) is { Kind: SchemaNode.NodeKind.Object } node ? node : null)];
            return () => new ToolCallGrammar(allowedNames, schemas);
        }

        static string Join(string? a, string b) => a is null ? b : a + "\n" + b;
    }

    /// <summary>Reads a number from AdditionalProperties, whatever numeric type (or JSON) a caller or configuration put there.</summary>
    private static float? Number(AdditionalPropertiesDictionary? properties, string key)
    {
        if (properties is null || !properties.TryGetValue(key, out object? value) || value is null) return null;
        try
        {
            return value switch
            {
                JsonElement { ValueKind: JsonValueKind.Number } e => e.GetSingle(),
                JsonElement { ValueKind: JsonValueKind.String } e => float.Parse(e.GetString()!, CultureInfo.InvariantCulture),
                string s => float.Parse(s, CultureInfo.InvariantCulture),
                IConvertible c => c.ToSingle(CultureInfo.InvariantCulture),
                _ => throw new FormatException(),
            };
        }
        catch (Exception ex) when (ex is FormatException or InvalidCastException or OverflowException)
        {
            throw new ArgumentException($"ChatOptions.AdditionalProperties['{key}'] must be a number, but it is '{value}'.", nameof(ChatOptions), ex);
        }
    }

    /// <summary>Runs on a thread-pool thread while holding _gate; releases it when done.</summary>
    private Outcome Produce(Request request, ChannelWriter<string> writer, CancellationToken cancellationToken)
    {
        long start = Stopwatch.GetTimestamp();
        using var activity = OnDeviceLlmActivity.Start(ModelId, request.Prompt.Length);
        try
        {
            var outcome = GenerateWithKeptCache(request, writer, cancellationToken, start);
            writer.TryComplete();
            OnDeviceLlmActivity.Stop(activity, outcome.Stats, outcome.FinishReason.Value);
            _metrics.Record(ModelId, outcome.Stats);
            LogRequest(_logger, ModelId, outcome.Stats.InputTokens, outcome.Stats.ReusedTokens, outcome.Stats.OutputTokens,
                outcome.Stats.TimeToFirstToken?.TotalMilliseconds ?? 0, outcome.Stats.DecodeTokensPerSecond ?? 0, outcome.FinishReason.Value);
            return outcome;
        }
        catch (Exception ex)
        {
            activity?.SetStatus(ActivityStatusCode.Error, ex.Message);
            if (ex is not OperationCanceledException) LogFailure(_logger, ModelId, ex);
            writer.TryComplete(ex);
            throw;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Picks a kept KV cache for the prompt and generates on it.</summary>
    private Outcome GenerateWithKeptCache(Request request, ChannelWriter<string> writer, CancellationToken cancellationToken, long start)
    {
        int[] prompt = request.Prompt;
        int contextLength = _options.ContextLength ?? _model.Config.ContextLength;
        if (prompt.Length >= contextLength)
            throw new InferenceException($"The prompt has {prompt.Length} tokens, but the context holds {contextLength} with room for the answer; shorten the conversation.");
        var (sequence, keep) = _pool.Acquire(prompt, _options.ReusePrefix);
        try
        {
            return Generate(request, writer, cancellationToken, start, sequence, keep);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // A failure inside a forward pass may leave the cache half written.
            _pool.Reset(sequence);
            throw;
        }
    }

    private Outcome Generate(Request request, ChannelWriter<string> writer, CancellationToken cancellationToken, long start, KvCachePool.Sequence sequence, int keep)
    {
        var session = sequence.Session;
        var cached = sequence.Tokens;
        var logits = _logits ??= new float[session.VocabSize];
        int[] prompt = request.Prompt;

        var stopIds = _encoder.StopTokenIds;
        var sampler = new Sampler(request.Sampling, session.VocabSize);
        var history = new List<int>(prompt.Length + Math.Min(request.MaxOutputTokens, session.ContextLength));
        history.AddRange(prompt);
        var text = new TextStream(_model.RequireTokenizer(), request.StopSequences);
        var grammar = request.Constraint is { } create ? new ConstrainedDecoding(TokenTexts(), create()) : null;
        var answer = request.ToolNames is null ? null : new System.Text.StringBuilder();
        // ToolMode.Auto: text that may still turn out to be a call is held back; once it is one, it is hidden and the
        // call grammar takes over from where the model is, so the call completes well formed.
        var detector = request.CallConstraint is null ? null : new CallDetector();

        cancellationToken.ThrowIfCancellationRequested();
        session.Prefill(prompt.AsSpan(keep)).CopyTo(logits);
        cached.AddRange(prompt.AsSpan(keep));

        int produced = 0;
        long first = 0;
        ChatFinishReason finish;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (grammar is not null && !grammar.Mask(logits))
                throw new InferenceException("No token of the vocabulary can continue the required output format.");
            int token = sampler.Sample(logits, CollectionsMarshal.AsSpan(history));
            grammar?.Accept(token);
            history.Add(token);
            if (produced++ == 0) first = Stopwatch.GetTimestamp();
            TokenSampled?.Invoke(produced);
            if (Array.IndexOf(stopIds, token) >= 0) { finish = ChatFinishReason.Stop; break; }
            Emit(text.Push(token));
            if (text.Stopped || grammar?.IsComplete == true) { finish = ChatFinishReason.Stop; break; }
            if (produced >= request.MaxOutputTokens || session.Position >= session.ContextLength) { finish = ChatFinishReason.Length; break; }
            session.Decode(token).CopyTo(logits);
            cached.Add(token);
        }
        Emit(text.Flush());
        // Out of budget inside the required format: close it, so the caller still gets a well-formed answer.
        if (grammar is not null && !grammar.IsComplete) Emit(grammar.Completion());
        if (detector is { Deciding: true }) Write(detector.Release());
        long end = Stopwatch.GetTimestamp();
        var stats = new GenerationStats(prompt.Length, produced, keep, Stopwatch.GetElapsedTime(start, first),
            GenerationStats.Rate(produced - 1, first, end));
        List<FunctionCallContent>? calls = null;
        if (answer is not null && ToolPrompt.TryParseCalls(answer.ToString(), request.ToolNames!, out var parsed))
        {
            calls = parsed;
            finish = ChatFinishReason.ToolCalls;
        }
        else if (detector is { IsCall: true })
        {
            // It began as a call but does not parse (written its own way, then cut short): show it as text.
            Write(detector.Release());
        }
        else if (request.HideText && answer is not null)
        {
            // A forced call always parses; should one ever not, the text is better than nothing.
            Write(answer.ToString());
        }
        return new Outcome(finish, stats, calls);

        void Emit(string piece)
        {
            if (piece.Length == 0) return;
            answer?.Append(piece);
            if (request.HideText) return;
            if (detector is null) { Write(piece); return; }
            bool wasDeciding = detector.Deciding;
            Write(detector.Push(piece));
            if (wasDeciding && detector.IsCall)
            {
                var call = request.CallConstraint!();
                // The model may have begun the call its own way (with spaces, say); then it goes on unconstrained.
                if (call.FeedAll(detector.CallText)) grammar = new ConstrainedDecoding(TokenTexts(), call);
            }
        }

        void Write(string piece)
        {
            if (piece.Length > 0) writer.TryWrite(piece);
        }
    }

    /// <summary>
    /// The text each token adds in the middle of a sequence (decoded after an anchor token, so SentencePiece's
    /// leading space is kept); null for special tokens and for tokens that are only part of a UTF-8 character,
    /// which the grammars never allow. Built once, on the first constrained request.
    /// </summary>
    private string?[] TokenTexts()
    {
        if (_tokenTexts is not null) return _tokenTexts;
        var tokenizer = _model.RequireTokenizer();
        int vocab = _model.Config.VocabSize;
        int anchor = tokenizer.Encode("a") is [int a, ..] ? a : 0;
        string anchorText = tokenizer.Decode([anchor], skipSpecialTokens: true);
        var texts = new string?[vocab];
        Span<int> pair = stackalloc int[2];
        pair[0] = anchor;
        for (int id = 0; id < vocab; id++)
        {
            if (id >= tokenizer.VocabSize || tokenizer.IsSpecial(id)) continue;
            pair[1] = id;
            string both = tokenizer.Decode(pair, skipSpecialTokens: true);
            if (both.Length <= anchorText.Length || !both.StartsWith(anchorText, StringComparison.Ordinal)) continue;
            string piece = both[anchorText.Length..];
            if (!piece.Contains('\uFFFD')) texts[id] = piece;
        }
        return _tokenTexts = texts;
    }

    private static string DefaultModelId(string source)
    {
        string trimmed = source.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        return Directory.Exists(trimmed) ? Path.GetFileName(trimmed) : Path.GetFileNameWithoutExtension(trimmed);
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "{ModelId}: {InputTokens} prompt tokens ({ReusedTokens} reused), {OutputTokens} generated, first token after {TtftMs:F1} ms, {TokensPerSecond:F1} tokens/s, finish {FinishReason}")]
    private static partial void LogRequest(ILogger logger, string modelId, int inputTokens, int reusedTokens, int outputTokens, double ttftMs, double tokensPerSecond, string finishReason);

    [LoggerMessage(Level = LogLevel.Error, Message = "{ModelId}: generation failed")]
    private static partial void LogFailure(ILogger logger, string modelId, Exception exception);
}

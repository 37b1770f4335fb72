using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using OnDeviceLlm.Connector.DependencyInjection;
using OnDeviceLlm.Connector.Diagnostics;
using OnDeviceLlm.Connector.SemanticKernel;
using OnDeviceLlm.Runtime;

namespace OnDeviceLlm.Connector.Tests;

public sealed class DependencyInjectionTests
{
    private static readonly ChatMessage[] Hello = [new(ChatRole.User, "Hello there.")];
    private static ChatOptions Greedy(int n) => new() { Temperature = 0f, MaxOutputTokens = n };

    private static async Task<string> DirectGreedy(int n)
    {
        using var model = TestModels.LoadChatModel();
        using var client = new OnDeviceChatClient(model);
        return (await client.GetResponseAsync(Hello, Greedy(n))).Text;
    }

    [Fact]
    public async Task The_model_loads_lazily_once_serves_both_services_and_is_disposed_with_the_container()
    {
        var services = new ServiceCollection();
        services.AddOnDeviceLlm(TestModels.ChatModel, o => o.ModelId = "tiny");
        LanguageModel model;
        string expected = await DirectGreedy(8);
        await using (var provider = services.BuildServiceProvider())
        {
            var chat = provider.GetRequiredService<IChatClient>();
            model = chat.GetService<LanguageModel>()!;
            Assert.Same(chat, provider.GetRequiredService<IChatClient>());
            Assert.Equal("tiny", chat.GetService<ChatClientMetadata>()!.DefaultModelId);
            Assert.Equal(expected, (await chat.GetResponseAsync(Hello, Greedy(8))).Text);

            var sk = provider.GetRequiredService<IChatCompletionService>();
            var history = new ChatHistory();
            history.AddUserMessage("Hello there.");
            var settings = new PromptExecutionSettings { ExtensionData = new Dictionary<string, object> { ["temperature"] = 0, ["max_tokens"] = 8 } };
            var reply = await sk.GetChatMessageContentAsync(history, settings);
            Assert.Equal(expected, reply.Content);
            Assert.Same(model, provider.GetRequiredService<IChatClient>().GetService<LanguageModel>());
        }
        Assert.Throws<ObjectDisposedException>(() => model.Special);
    }

    [Fact]
    public void Nothing_is_loaded_until_the_client_is_resolved_and_a_bad_path_fails_then()
    {
        var services = new ServiceCollection();
        services.AddOnDeviceLlm(Path.Combine(TestModels.ScratchRoot, "missing.odlm"));
        using var provider = services.BuildServiceProvider();
        Assert.Throws<FileNotFoundException>(() => provider.GetRequiredService<IChatClient>());
    }

    [Fact]
    public void A_missing_model_path_is_reported_by_name()
    {
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().Build());
        services.AddOnDeviceLlm();
        using var provider = services.BuildServiceProvider();
        var ex = Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<IChatClient>());
        Assert.Contains("OnDeviceLlm:ModelPath", ex.Message);
    }

    [Fact]
    public async Task Options_bind_from_the_OnDeviceLlm_configuration_section()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["OnDeviceLlm:ModelPath"] = TestModels.ChatModel,
            ["OnDeviceLlm:ModelId"] = "from-config",
            ["OnDeviceLlm:Temperature"] = "0",
            ["OnDeviceLlm:MaxOutputTokens"] = "5",
            ["OnDeviceLlm:Backend"] = "Managed",
        }).Build();
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(configuration);
        services.AddOnDeviceLlm();
        using var provider = services.BuildServiceProvider();
        var chat = provider.GetRequiredService<IChatClient>();

        var response = await chat.GetResponseAsync(Hello);

        Assert.Equal("from-config", response.ModelId);
        Assert.Equal(5, response.Usage!.OutputTokenCount);
        Assert.Equal(await DirectGreedy(5), response.Text);
        Assert.IsType<OnDeviceLlm.Runtime.Compute.ManagedKernels>(chat.GetService<LanguageModel>()!.Kernels);
    }

    [Fact]
    public async Task Keyed_registrations_serve_separate_models_side_by_side()
    {
        var services = new ServiceCollection();
        services.AddKeyedOnDeviceLlm("a", o => { o.ModelPath = TestModels.ChatModel; o.ModelId = "model-a"; });
        services.AddKeyedOnDeviceLlm("b", o => { o.ModelPath = TestModels.ChatModel; o.ModelId = "model-b"; });
        using var provider = services.BuildServiceProvider();
        var a = provider.GetRequiredKeyedService<IChatClient>("a");
        var b = provider.GetRequiredKeyedService<IChatClient>("b");
        Assert.Null(provider.GetService<IChatClient>());
        Assert.Equal("model-a", (await a.GetResponseAsync(Hello, Greedy(2))).ModelId);
        Assert.Equal("model-b", (await b.GetResponseAsync(Hello, Greedy(2))).ModelId);
        Assert.NotNull(provider.GetRequiredKeyedService<IChatCompletionService>("b"));
    }

    [Fact]
    public async Task Middleware_from_the_returned_builder_wraps_the_on_device_client()
    {
        var services = new ServiceCollection();
        services.AddOnDeviceLlm(TestModels.ChatModel).UseFunctionInvocation();
        using var provider = services.BuildServiceProvider();
        var chat = provider.GetRequiredService<IChatClient>();
        Assert.IsType<FunctionInvokingChatClient>(chat);
        Assert.NotNull(chat.GetService<OnDeviceChatClient>());
        Assert.Equal(await DirectGreedy(6), (await chat.GetResponseAsync(Hello, Greedy(6))).Text);
    }

    [Fact]
    public async Task The_kernel_builder_extension_registers_a_chat_completion_service()
    {
        var builder = Kernel.CreateBuilder();
        builder.AddOnDeviceLlmChatCompletion(TestModels.ChatModel, serviceId: "local");
        var kernel = builder.Build();
        var service = kernel.GetRequiredService<IChatCompletionService>("local");
        var history = new ChatHistory();
        history.AddUserMessage("Hello there.");
        var reply = await service.GetChatMessageContentAsync(history,
            new PromptExecutionSettings { ExtensionData = new Dictionary<string, object> { ["temperature"] = 0, ["max_tokens"] = 7 } }, kernel);
        Assert.Equal(await DirectGreedy(7), reply.Content);
        (kernel.Services as IDisposable)?.Dispose();
    }

    [Fact]
    public async Task Metrics_and_logs_report_each_request()
    {
        var measurements = new ConcurrentDictionary<string, double>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) => { if (instrument.Meter.Name == OnDeviceLlmMetrics.MeterName) l.EnableMeasurementEvents(instrument); };
        listener.SetMeasurementEventCallback<long>((i, v, tags, _) => { if (Tagged(tags)) measurements.AddOrUpdate(i.Name, v, (_, old) => old + v); });
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => { if (Tagged(tags)) measurements[i.Name] = v; });
        listener.Start();
        var logs = new ConcurrentQueue<string>();
        var services = new ServiceCollection();
        services.AddLogging(b => b.SetMinimumLevel(LogLevel.Debug).AddProvider(new ListLoggerProvider(logs)));
        services.AddOnDeviceLlm(TestModels.ChatModel, o => o.ModelId = "metered");
        using var provider = services.BuildServiceProvider();

        var response = await provider.GetRequiredService<IChatClient>().GetResponseAsync(Hello, Greedy(9));

        Assert.Equal(response.Usage!.InputTokenCount, (long)measurements[OnDeviceLlmMetrics.InputTokensName]);
        Assert.Equal(9, measurements[OnDeviceLlmMetrics.OutputTokensName]);
        Assert.InRange(measurements[OnDeviceLlmMetrics.TimeToFirstTokenName], 1e-7, 30);
        Assert.True(measurements[OnDeviceLlmMetrics.DecodeRateName] > 0);
        Assert.Contains(logs, l => l.StartsWith("Loaded ", StringComparison.Ordinal) && l.Contains("as metered"));
        Assert.Contains(logs, l => l.Contains("9 generated") && l.Contains("finish length"));

        static bool Tagged(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            foreach (var t in tags) if (t.Key == "gen_ai.request.model" && (string?)t.Value == "metered") return true;
            return false;
        }
    }

    [Fact]
    public async Task Each_generation_is_traced_with_its_token_counts()
    {
        var activities = new ConcurrentQueue<System.Diagnostics.Activity>();
        using var listener = new System.Diagnostics.ActivityListener
        {
            ShouldListenTo = s => s.Name == OnDeviceLlmActivity.SourceName,
            Sample = (ref System.Diagnostics.ActivityCreationOptions<System.Diagnostics.ActivityContext> _) => System.Diagnostics.ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activities.Enqueue,
        };
        System.Diagnostics.ActivitySource.AddActivityListener(listener);
        using var model = TestModels.LoadChatModel();
        using var client = new OnDeviceChatClient(model, new OnDeviceChatClientOptions { ModelId = "traced" });

        var response = await client.GetResponseAsync(Hello, Greedy(4));

        var activity = Assert.Single(activities, a => (string?)a.GetTagItem("gen_ai.request.model") == "traced");
        Assert.Equal(response.Usage!.InputTokenCount, Convert.ToInt64(activity.GetTagItem("gen_ai.usage.input_tokens")));
        Assert.Equal(4L, Convert.ToInt64(activity.GetTagItem("gen_ai.usage.output_tokens")));
        Assert.Equal("length", activity.GetTagItem("gen_ai.response.finish_reasons"));
    }

    private sealed class ListLoggerProvider(ConcurrentQueue<string> lines) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new ListLogger(lines);
        public void Dispose() { }

        private sealed class ListLogger(ConcurrentQueue<string> lines) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
            public bool IsEnabled(LogLevel logLevel) => true;
            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                lines.Enqueue(formatter(state, exception));
        }
    }
}

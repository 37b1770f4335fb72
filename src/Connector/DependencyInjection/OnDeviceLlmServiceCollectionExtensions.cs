using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using OnDeviceLlm.Connector.Diagnostics;
using OnDeviceLlm.Runtime;

namespace OnDeviceLlm.Connector.DependencyInjection;

/// <summary>
/// Registers an on-device model as <see cref="IChatClient"/> and as Semantic Kernel's <see cref="IChatCompletionService"/>.
/// The model loads once, the first time either service is resolved, and is disposed with the container.
/// Each method returns the <see cref="ChatClientBuilder"/> of the registration, so middleware can be added:
/// <code>services.AddOnDeviceLlm("model.odlm").UseFunctionInvocation().UseOpenTelemetry();</code>
/// </summary>
public static partial class OnDeviceLlmServiceCollectionExtensions
{
    /// <summary>Serves the model at <paramref name="modelPath"/>.</summary>
    public static ChatClientBuilder AddOnDeviceLlm(this IServiceCollection services, string modelPath, Action<OnDeviceLlmOptions>? configure = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        return services.AddOnDeviceLlm(o => { o.ModelPath = modelPath; configure?.Invoke(o); });
    }

    /// <summary>Serves a model configured in code (on top of anything bound from configuration).</summary>
    public static ChatClientBuilder AddOnDeviceLlm(this IServiceCollection services, Action<OnDeviceLlmOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        services.AddOptions<OnDeviceLlmOptions>().Configure(configure);
        return Register(services, serviceKey: null, Options.DefaultName);
    }

    /// <summary>Serves the model described by the <c>OnDeviceLlm</c> section of the container's <see cref="IConfiguration"/> (the generic host's appsettings.json, environment, command line).</summary>
    public static ChatClientBuilder AddOnDeviceLlm(this IServiceCollection services)
    {
        services.AddOptions<OnDeviceLlmOptions>().BindConfiguration(OnDeviceLlmOptions.SectionName);
        return Register(services, serviceKey: null, Options.DefaultName);
    }

    /// <summary>Serves the model described by <paramref name="section"/> (for example <c>configuration.GetSection("OnDeviceLlm")</c>).</summary>
    public static ChatClientBuilder AddOnDeviceLlm(this IServiceCollection services, IConfiguration section)
    {
        ArgumentNullException.ThrowIfNull(section);
        services.AddOptions<OnDeviceLlmOptions>().Bind(section);
        return Register(services, serviceKey: null, Options.DefaultName);
    }

    /// <summary>
    /// Serves a model as the keyed services <c>[FromKeyedServices(serviceKey)] IChatClient</c> and
    /// <c>IChatCompletionService</c>, so several models can live in one container; its options are the named
    /// options <c>serviceKey.ToString()</c>, bound from the section <c>OnDeviceLlm:{serviceKey}</c> of the container's
    /// IConfiguration when there is one, then <paramref name="configure"/>.
    /// </summary>
    public static ChatClientBuilder AddKeyedOnDeviceLlm(this IServiceCollection services, object serviceKey, Action<OnDeviceLlmOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(serviceKey);
        string name = serviceKey.ToString() ?? throw new ArgumentException("The service key must have a string form.", nameof(serviceKey));
        // Bound only where the container has configuration (a generic host), so plain containers work too.
        var options = services.AddOptions<OnDeviceLlmOptions>(name).Configure<IServiceProvider>((o, sp) =>
            sp.GetService<IConfiguration>()?.GetSection($"{OnDeviceLlmOptions.SectionName}:{name}").Bind(o));
        if (configure is not null) options.Configure(configure);
        return Register(services, serviceKey, name);
    }

    private static ChatClientBuilder Register(IServiceCollection services, object? serviceKey, string optionsName)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton(sp => new OnDeviceLlmMetrics(sp.GetService<IMeterFactory>()));
        var builder = serviceKey is null
            ? services.AddChatClient(sp => CreateClient(sp, optionsName))
            : services.AddKeyedChatClient(serviceKey, sp => CreateClient(sp, optionsName));
        // SK adapts the same IChatClient pipeline, so both services share the one loaded model; kernel function
        // invocation is added so that FunctionChoiceBehavior.Auto/Required runs plugins, as SK's own connectors do.
        if (serviceKey is null)
            services.TryAddSingleton<IChatCompletionService>(sp => AsKernelService(sp, sp.GetRequiredService<IChatClient>()));
        else
            services.TryAddKeyedSingleton<IChatCompletionService>(serviceKey, (sp, key) => AsKernelService(sp, sp.GetRequiredKeyedService<IChatClient>(key)));
        return builder;
    }

    private static IChatCompletionService AsKernelService(IServiceProvider services, IChatClient chat) =>
        new ChatClientBuilder(chat)
            .UseKernelFunctionInvocation(services.GetService<ILoggerFactory>())
            .Use(inner => new OnDeviceLlm.Connector.SemanticKernel.StatelessChatClient(inner))
            .Build(services)
            .AsChatCompletionService(services);

    private static OnDeviceChatClient CreateClient(IServiceProvider services, string optionsName)
    {
        var options = services.GetRequiredService<IOptionsMonitor<OnDeviceLlmOptions>>().Get(optionsName);
        if (string.IsNullOrWhiteSpace(options.ModelPath))
            throw new InvalidOperationException(
                $"OnDeviceLlm: ModelPath is not set; set it in code or in configuration ({OnDeviceLlmOptions.SectionName}{(optionsName.Length > 0 ? ":" + optionsName : "")}:ModelPath).");
        var loggerFactory = services.GetService<ILoggerFactory>();
        var logger = loggerFactory?.CreateLogger<OnDeviceChatClient>();
        long start = Stopwatch.GetTimestamp();
        var model = LanguageModel.Load(options.ModelPath, options.ToLoadOptions());
        try
        {
            var client = new OnDeviceChatClient(model, options.ToClientOptions(), logger, services.GetRequiredService<OnDeviceLlmMetrics>());
            if (logger is not null)
                LogLoaded(logger, options.ModelPath, client.ModelId, model.Kernels.Name, Stopwatch.GetElapsedTime(start).TotalMilliseconds, client.Template.Name);
            return client;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Loaded {ModelPath} as {ModelId} ({Kernels}) in {ElapsedMs:F0} ms; chat template {Template}")]
    private static partial void LogLoaded(ILogger logger, string modelPath, string modelId, string kernels, double elapsedMs, string template);
}

using Microsoft.Extensions.AI;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using OnDeviceLlm.Connector.DependencyInjection;

namespace OnDeviceLlm.Connector.SemanticKernel;

/// <summary>Semantic Kernel registration, in the shape of SK's own connectors (<c>AddOpenAIChatCompletion</c> and kin).</summary>
public static class OnDeviceLlmKernelBuilderExtensions
{
    /// <summary>
    /// Adds an on-device model as the kernel's <see cref="IChatCompletionService"/> (and <see cref="IChatClient"/>),
    /// keyed by <paramref name="serviceId"/> when given. The model loads when the kernel first resolves the service.
    /// </summary>
    public static IKernelBuilder AddOnDeviceLlmChatCompletion(this IKernelBuilder builder, string modelPath, string? serviceId = null,
        Action<OnDeviceLlmOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        if (serviceId is null) builder.Services.AddOnDeviceLlm(modelPath, configure);
        else builder.Services.AddKeyedOnDeviceLlm(serviceId, o => { o.ModelPath = modelPath; configure?.Invoke(o); });
        return builder;
    }
}

using System.ComponentModel;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using OnDeviceLlm.Connector.SemanticKernel;

// A Semantic Kernel agent loop on an on-device model: the kernel's chat service is the local model, the
// "clock" plugin is offered as tools, and FunctionChoiceBehavior lets the kernel run whatever the model calls.
// Usage: dotnet run --project samples/SemanticKernelAgent -- [model.odlm | model.gguf | hf-folder]
// Without an argument it uses stories260K from ../shared beside the repository: a story model that knows
// nothing of tools, so the first turn uses FunctionChoiceBehavior.Required(), under which the connector's
// grammar makes even this model emit a well-formed call; a capable chat model can use Auto() throughout.
string? modelPath = args.Length > 0 ? args[0] : FindDefault();
if (modelPath is null)
{
    Console.Error.WriteLine("Pass a model path (the default, ../shared/models/stories260K/stories260K.gguf beside the repository, was not found).");
    return 2;
}

var builder = Kernel.CreateBuilder();
builder.AddOnDeviceLlmChatCompletion(modelPath, configure: o => o.MaxOutputTokens = 60);
builder.Plugins.AddFromType<ClockPlugin>("clock");
var kernel = builder.Build();
var chat = kernel.GetRequiredService<IChatCompletionService>();

var history = new ChatHistory("You are a helpful assistant. Use the clock tool to answer questions about time.");
foreach (var (question, behavior) in new[]
{
    ("What time is it in UTC?", FunctionChoiceBehavior.Required()),
    ("Thanks! Anything else?", FunctionChoiceBehavior.Auto()),
})
{
    Console.WriteLine($"user> {question}");
    history.AddUserMessage(question);
    try
    {
        var reply = await chat.GetChatMessageContentAsync(history, new PromptExecutionSettings { FunctionChoiceBehavior = behavior }, kernel);
        history.Add(reply);
        Console.WriteLine($"assistant> {reply.Content}");
    }
    catch (OnDeviceLlm.Runtime.OnDeviceLlmException ex)
    {
        // A model can fail on an input (for example numerically); the error says why, and the loop goes on.
        Console.WriteLine($"(the model failed on this turn: {ex.Message})");
    }
}
Console.WriteLine($"({history.Count} messages in the history, tool calls and results included)");
return 0;

static string? FindDefault()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        string candidate = Path.Combine(dir.FullName, "shared", "models", "stories260K", "stories260K.gguf");
        if (File.Exists(candidate)) return candidate;
    }
    return null;
}

/// <summary>The plugin the agent can call; each call is printed so the loop is visible.</summary>
public sealed class ClockPlugin
{
    [KernelFunction("utc_now"), Description("Returns the current UTC date and time in ISO 8601.")]
    public string UtcNow()
    {
        string now = DateTime.UtcNow.ToString("O");
        Console.WriteLine($"  [tool] clock.utc_now() -> {now}");
        return now;
    }
}

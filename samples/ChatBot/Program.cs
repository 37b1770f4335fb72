using Microsoft.Extensions.AI;
using OnDeviceLlm.Connector;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Samples.ChatBot;

// Usage: dotnet run --project samples/ChatBot -- [model.odlm | model.gguf | hf-folder] [--max-tokens N] [--temperature T]
// With no model argument it uses stories260K (a 260K-parameter Llama trained on children's stories, from
// ../shared/models next to the repository): it writes little stories whatever you say, but needs no download.
// Where that is missing too, it builds a tiny random-weight model and says so: noise, but the program runs.
string? modelPath = null;
var options = new ChatOptions { MaxOutputTokens = 256 };
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--max-tokens" when i + 1 < args.Length && int.TryParse(args[i + 1], out int max) && max > 0:
            options.MaxOutputTokens = max; i++; break;
        case "--temperature" when i + 1 < args.Length && float.TryParse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture, out float t) && t >= 0:
            options.Temperature = t; i++; break;
        case "-h" or "--help":
            Console.WriteLine("usage: ChatBot [model.odlm | model.gguf | hf-folder] [--max-tokens N] [--temperature T]");
            return 0;
        default:
            if (args[i].StartsWith("--", StringComparison.Ordinal) || modelPath is not null)
            {
                Console.Error.WriteLine($"Unexpected argument '{args[i]}'. usage: ChatBot [model] [--max-tokens N] [--temperature T]");
                return 2;
            }
            modelPath = args[i];
            break;
    }
}

if (modelPath is null)
{
    modelPath = DefaultModel.FindStories();
    if (modelPath is not null)
        Console.WriteLine($"No model given: using stories260K ({modelPath}), a 260K-parameter model trained on children's stories. It answers with short stories.");
    else
    {
        modelPath = DefaultModel.CreateSynthetic(Path.Combine(Path.GetTempPath(), "odllm-chatbot-demo.odlm"));
        Console.WriteLine($"No model given and stories260K (../shared beside the repository) is not here: using a tiny RANDOM-WEIGHT demo model ({modelPath}).");
        Console.WriteLine("Its answers are noise; it only shows the machinery. Pass a real model (.odlm, .gguf or a Hugging Face folder) to chat.");
    }
}

LanguageModel model;
try
{
    model = LanguageModel.Load(modelPath);
}
catch (Exception ex) when (ex is OnDeviceLlmException or IOException or UnauthorizedAccessException)
{
    Console.Error.WriteLine(ex.Message);
    return 1;
}

OnDeviceChatClient client;
try
{
    client = new OnDeviceChatClient(model, new OnDeviceChatClientOptions { DisposeModel = true });
}
catch (OnDeviceLlmException ex)
{
    model.Dispose();
    Console.Error.WriteLine(ex.Message);
    return 1;
}

using (client)
{
    Console.WriteLine($"{client.ModelId}: {model.Config.Architecture}, {model.Config.NumLayers} layers, context {model.Config.ContextLength}, chat format {client.Template.Name}, kernels {model.Kernels.Name}.");
    Console.WriteLine(ChatBotSession.Help);
    var session = new ChatBotSession(client, Console.Out, options);
    // Ctrl+C during an answer stops the answer; at the prompt it ends the program as usual.
    Console.CancelKeyPress += (_, e) => e.Cancel = session.CancelAnswer();
    await session.RunAsync(Console.In);
}
return 0;

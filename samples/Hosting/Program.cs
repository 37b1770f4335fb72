using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OnDeviceLlm.Connector.DependencyInjection;

// A generic host whose IChatClient comes from the "OnDeviceLlm" section of appsettings.json (override any key on
// the command line, e.g. --OnDeviceLlm:ModelPath=path/to/model.odlm). The model loads on first use and is
// disposed when the host stops. The default model is stories260K from ../shared beside the repository.
var builder = Host.CreateApplicationBuilder(args);
builder.Configuration.SetBasePath(AppContext.BaseDirectory).AddJsonFile("appsettings.json", optional: false).AddCommandLine(args);
builder.Services.AddOnDeviceLlm().UseLogging();
builder.Services.PostConfigure<OnDeviceLlmOptions>(o => o.ModelPath = RepositoryPaths.Resolve(o.ModelPath));
builder.Services.AddHostedService<AskOnce>();
await builder.Build().RunAsync();

/// <summary>Asks the configured question once, streams the answer, then stops the host.</summary>
internal sealed class AskOnce(IChatClient chat, IConfiguration configuration, IHostApplicationLifetime lifetime, ILogger<AskOnce> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            string question = configuration["Question"] ?? "Hello!";
            Console.WriteLine($"> {question}");
            await foreach (var update in chat.GetStreamingResponseAsync(question, cancellationToken: stoppingToken))
                Console.Write(update.Text);
            Console.WriteLine();
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            logger.LogError("{Message}", ex.Message);
            Environment.ExitCode = 1;
        }
        finally
        {
            lifetime.StopApplication();
        }
    }
}

/// <summary>Relative model paths in configuration are taken from the working directory, else from the repository's parent folder.</summary>
internal static class RepositoryPaths
{
    public static string? Resolve(string? path)
    {
        if (string.IsNullOrEmpty(path) || Path.IsPathRooted(path) || File.Exists(path) || Directory.Exists(path)) return path;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (!File.Exists(Path.Combine(dir.FullName, "Connector.sln"))) continue;
            string candidate = Path.GetFullPath(Path.Combine(dir.FullName, path));
            return File.Exists(candidate) || Directory.Exists(candidate) ? candidate : path;
        }
        return path;
    }
}

using System.Diagnostics;
using System.Text.Json;

namespace OnDeviceLlm.Cli.Tests;

/// <summary>Runs the built odllm executable as a user would, capturing exit code, stdout and stderr.</summary>
public static class CliHarness
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public JsonElement Json()
        {
            Xunit.Assert.True(ExitCode == 0, $"odllm failed ({ExitCode}): {Stderr}");
            using var doc = JsonDocument.Parse(Stdout);
            return doc.RootElement.Clone();
        }
    }

    public static string RepositoryRoot { get; } = FindRoot();
    public static string Fixtures => Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared", "fixtures"));

    public static Result Run(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "odllm.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(120_000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"odllm {string.Join(' ', args)} did not finish in 120 s.");
        }
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Asserts the CLI contract for bad input: non-zero exit, one clear line on stderr, no stack trace.</summary>
    public static void AssertCleanFailure(Result result, string expectedFragment)
    {
        Xunit.Assert.NotEqual(0, result.ExitCode);
        string error = result.Stderr.Trim();
        Xunit.Assert.Contains(expectedFragment, error, StringComparison.OrdinalIgnoreCase);
        Xunit.Assert.DoesNotContain("   at ", error);
        Xunit.Assert.DoesNotContain("Unhandled exception", error);
        Xunit.Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Connector.sln"))) return dir.FullName;
        throw new InvalidOperationException("Connector.sln not found above " + AppContext.BaseDirectory);
    }
}

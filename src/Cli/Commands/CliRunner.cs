using System.Text.Json;
using OnDeviceLlm.Runtime;

namespace OnDeviceLlm.Cli.Commands;

/// <summary>Runs a command body so bad input ends as one sentence on stderr and exit code 1, never a stack trace.</summary>
internal static class CliRunner
{
    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is OnDeviceLlmException or IOException or UnauthorizedAccessException
                                      or ArgumentException or FormatException or JsonException or NotSupportedException)
        {
            Console.Error.WriteLine($"error: {OneSentence(e)}");
            return 1;
        }
    }

    private static string OneSentence(Exception e)
    {
        string message = e.Message;
        // ArgumentException appends " (Parameter 'x')" and sometimes an "Actual value" line; users need neither.
        if (e is ArgumentException { ParamName: { } name })
            message = message.Replace($" (Parameter '{name}')", "");
        return message.Split('\n')[0].Trim();
    }

    /// <summary>Writes one JSON object on stdout.</summary>
    public static void WriteJson(Action<Utf8JsonWriter> write)
    {
        using var stdout = Console.OpenStandardOutput();
        using (var writer = new Utf8JsonWriter(stdout, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            write(writer);
            writer.WriteEndObject();
        }
        stdout.Write("\n"u8);
    }

    public static void WriteArray(this Utf8JsonWriter writer, string name, IEnumerable<int> values)
    {
        writer.WriteStartArray(name);
        foreach (var v in values) writer.WriteNumberValue(v);
        writer.WriteEndArray();
    }

    /// <summary>Parses "1,2,3" (spaces allowed).</summary>
    public static int[] ParseIds(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new ArgumentException("--ids needs at least one token id, e.g. --ids 1,2,3.");
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], out ids[i]))
                throw new ArgumentException($"--ids: \"{parts[i]}\" is not an integer token id.");
        return ids;
    }
}

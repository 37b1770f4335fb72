using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace OnDeviceLlm.Connector.Tools;

/// <summary>
/// The generic tool convention: the tools are listed (name, description, JSON Schema of the arguments) in the
/// system message; a call is the JSON text <c>{"tool_calls":[{"name":…,"arguments":{…}}]}</c>; earlier calls are
/// rendered back in that form and their results as user turns starting "Tool result". Every chat family gets the
/// same convention, so any template (and any model) can take part in a function-calling loop.
/// </summary>
internal static class ToolPrompt
{
    // The convention's JSON is compact, exactly as the grammar makes the model write it.
    private static readonly JsonSerializerOptions Compact = new(AIJsonUtilities.DefaultOptions) { WriteIndented = false };

    public static string Describe(IReadOnlyList<AIFunctionDeclaration> tools, bool required)
    {
        var sb = new StringBuilder("You can call these tools; each line gives a tool's name, what it does and the JSON Schema of its arguments:\n");
        foreach (var tool in tools)
        {
            sb.Append(JsonSerializer.Serialize(new Dictionary<string, object?>
            {
                ["name"] = tool.Name, ["description"] = tool.Description, ["parameters"] = tool.JsonSchema,
            })).Append('\n');
        }
        sb.Append(required ? "Call one of them now. " : "To call one, ");
        sb.Append("Reply with only this JSON: {\"tool_calls\":[{\"name\":\"<tool name>\",\"arguments\":{<arguments>}}]}. ");
        sb.Append("The result comes back in a message starting with \"Tool result\".");
        return sb.ToString();
    }

    /// <summary>
    /// The messages as plain text turns: <paramref name="instructions"/> joined to the system message (one is
    /// added when there is none), function calls as their JSON, function results as user turns.
    /// </summary>
    public static List<ChatMessage> Rewrite(IReadOnlyList<ChatMessage> messages, string? instructions)
    {
        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        var result = new List<ChatMessage>(messages.Count + 1);
        bool placed = instructions is null;
        foreach (var m in messages)
        {
            if (!placed && m.Role == ChatRole.System)
            {
                result.Add(new ChatMessage(ChatRole.System, m.Text + "\n\n" + instructions));
                placed = true;
                continue;
            }
            var calls = m.Contents.OfType<FunctionCallContent>().ToList();
            var results = m.Contents.OfType<FunctionResultContent>().ToList();
            if (calls.Count == 0 && results.Count == 0) { result.Add(m); continue; }

            foreach (var call in calls) names[call.CallId] = call.Name;
            // Under ToolMode.Auto the call's JSON was also streamed as text; render it once.
            string own = m.Text;
            if (calls.Count > 0 && own.TrimStart().StartsWith("{\"tool_calls\"", StringComparison.Ordinal)) own = "";
            var text = new StringBuilder(own);
            if (calls.Count > 0)
            {
                if (text.Length > 0) text.Append('\n');
                text.Append(FormatCalls(calls));
            }
            foreach (var r in results)
            {
                if (text.Length > 0) text.Append('\n');
                string name = names.TryGetValue(r.CallId, out var n) ? n : "the tool";
                text.Append("Tool result for ").Append(name).Append(": ").Append(FormatResult(r));
            }
            result.Add(new ChatMessage(calls.Count > 0 ? ChatRole.Assistant : ChatRole.User, text.ToString()));
        }
        if (!placed) result.Insert(0, new ChatMessage(ChatRole.System, instructions!));
        return result;
    }

    public static string FormatCalls(IEnumerable<FunctionCallContent> calls) =>
        JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["tool_calls"] = calls.Select(c => new Dictionary<string, object?> { ["name"] = c.Name, ["arguments"] = c.Arguments ?? new Dictionary<string, object?>() }).ToList(),
        }, Compact);

    private static string FormatResult(FunctionResultContent r)
    {
        if (r.Exception is not null) return "error: " + r.Exception.Message;
        return r.Result switch
        {
            null => "null",
            string s => s,
            JsonElement { ValueKind: JsonValueKind.String } e => e.GetString()!,
            JsonElement e => e.GetRawText(),
            object o => JsonSerializer.Serialize(o, Compact.GetTypeInfo(o.GetType())),
        };
    }

    /// <summary>Reads calls in the convention from a whole answer; false when the answer is anything else.</summary>
    public static bool TryParseCalls(string text, IReadOnlySet<string> toolNames, out List<FunctionCallContent> calls)
    {
        calls = [];
        string trimmed = text.Trim();
        if (!trimmed.StartsWith('{')) return false;
        try
        {
            using var doc = JsonDocument.Parse(trimmed);
            if (!doc.RootElement.TryGetProperty("tool_calls", out var list) || list.ValueKind != JsonValueKind.Array) return false;
            foreach (var item in list.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String
                    || !toolNames.Contains(name.GetString()!)) return false;
                var arguments = new Dictionary<string, object?>(StringComparer.Ordinal);
                if (item.TryGetProperty("arguments", out var args))
                {
                    if (args.ValueKind != JsonValueKind.Object) return false;
                    foreach (var p in args.EnumerateObject()) arguments[p.Name] = p.Value.Clone();
                }
                calls.Add(new FunctionCallContent("call_" + Guid.NewGuid().ToString("N")[..24], name.GetString()!, arguments));
            }
            return calls.Count > 0;
        }
        catch (JsonException)
        {
            return false;
        }
    }
}

using System.Text.Json;
using Microsoft.Extensions.AI;
using OnDeviceLlm.Connector.Tools;

namespace OnDeviceLlm.Connector.Tests;

public sealed class ToolPromptTests
{
    private static readonly HashSet<string> Names = ["get_time", "add"];

    [Theory]
    [InlineData("{\"tool_calls\":[{\"name\":\"get_time\",\"arguments\":{}}]}", 1)]
    [InlineData("  {\"tool_calls\":[{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}},{\"name\":\"get_time\"}]}\n", 2)]
    public void Calls_in_the_convention_are_parsed_with_fresh_call_ids(string text, int count)
    {
        Assert.True(ToolPrompt.TryParseCalls(text, Names, out var calls));
        Assert.Equal(count, calls.Count);
        Assert.Equal(count, calls.Select(c => c.CallId).Distinct().Count());
        if (calls[0].Name == "add") Assert.Equal(2, ((JsonElement)calls[0].Arguments!["b"]!).GetInt32());
    }

    [Theory]
    [InlineData("Just text.")]
    [InlineData("{\"tool_calls\":[{\"name\":\"unknown\",\"arguments\":{}}]}")]
    [InlineData("{\"tool_calls\":[{\"name\":\"add\",\"arguments\":[1,2]}]}")]
    [InlineData("{\"tool_calls\":[]}")]
    [InlineData("{\"tool_calls\":[{\"name\":\"add\"")]
    [InlineData("{\"answer\":42}")]
    public void Anything_else_is_not_a_call(string text)
    {
        Assert.False(ToolPrompt.TryParseCalls(text, Names, out _));
    }

    [Fact]
    public void Calls_and_results_are_rendered_as_text_turns_and_instructions_join_the_system_message()
    {
        var call = new FunctionCallContent("c1", "add", new Dictionary<string, object?> { ["a"] = 1, ["b"] = 2 });
        var messages = new List<ChatMessage>
        {
            new(ChatRole.System, "Be exact."),
            new(ChatRole.User, "1+2?"),
            new(ChatRole.Assistant, [call]),
            new(ChatRole.Tool, [new FunctionResultContent("c1", 3)]),
        };

        var rewritten = ToolPrompt.Rewrite(messages, "TOOLS HERE");

        Assert.Equal(["system", "user", "assistant", "user"], rewritten.Select(m => m.Role.Value));
        Assert.Equal("Be exact.\n\nTOOLS HERE", rewritten[0].Text);
        Assert.Equal("{\"tool_calls\":[{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}}]}", rewritten[2].Text);
        Assert.Equal("Tool result for add: 3", rewritten[3].Text);
        Assert.Equal(["system", "user"], ToolPrompt.Rewrite([new ChatMessage(ChatRole.User, "hi")], "T").Select(m => m.Role.Value));
    }

    [Fact]
    public void A_call_that_was_also_streamed_as_text_is_rendered_once()
    {
        const string json = "{\"tool_calls\":[{\"name\":\"add\",\"arguments\":{}}]}";
        var message = new ChatMessage(ChatRole.Assistant, [new TextContent(json), new FunctionCallContent("c1", "add", new Dictionary<string, object?>())]);
        Assert.Equal(json, ToolPrompt.Rewrite([message], null)[0].Text);
    }

    [Fact]
    public void The_description_lists_each_tool_with_its_schema()
    {
        var add = AIFunctionFactory.Create((int a, int b) => a + b, "add", "Adds two numbers.");
        string text = ToolPrompt.Describe([add], required: false);
        var line = text.Split('\n')[1];
        using var doc = JsonDocument.Parse(line);
        Assert.Equal("add", doc.RootElement.GetProperty("name").GetString());
        Assert.Equal("integer", doc.RootElement.GetProperty("parameters").GetProperty("properties").GetProperty("a").GetProperty("type").GetString());
        Assert.Contains("{\"tool_calls\":[{\"name\":\"<tool name>\",\"arguments\":{<arguments>}}]}", text);
    }
}

public sealed class CallDetectorTests
{
    [Fact]
    public void A_call_is_held_back_entirely()
    {
        var d = new CallDetector();
        Assert.Equal("", d.Push("  {"));
        Assert.Equal("", d.Push("\"tool"));
        Assert.Equal("", d.Push("_calls\":[{\"name\""));
        Assert.True(d.IsCall);
        Assert.Equal("", d.Push(":\"add\"}]}"));
        Assert.Equal("{\"tool_calls\":[{\"name\":\"add\"}]}", d.CallText);
    }

    [Theory]
    [InlineData(new[] { "{", "\"answer\":1}" }, new[] { "", "{\"answer\":1}" })]
    [InlineData(new[] { "Hello", " world" }, new[] { "Hello", " world" })]
    [InlineData(new[] { " ", "{\"tool", "s\":2}" }, new[] { "", "", " {\"tools\":2}" })]
    public void Other_text_is_released_as_soon_as_it_diverges(string[] pieces, string[] shown)
    {
        var d = new CallDetector();
        Assert.Equal(shown, pieces.Select(d.Push).ToArray());
        Assert.False(d.IsCall);
        Assert.False(d.Deciding);
    }

    [Fact]
    public void Text_still_undecided_at_the_end_is_released()
    {
        var d = new CallDetector();
        Assert.Equal("", d.Push("{\"tool"));
        Assert.Equal("{\"tool", d.Release());
    }
}

using System.ComponentModel;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using OnDeviceLlm.Connector.DependencyInjection;
using OnDeviceLlm.Connector.SemanticKernel;
using OnDeviceLlm.Connector.Tools;
using FunctionCallContent = Microsoft.Extensions.AI.FunctionCallContent;
using FunctionResultContent = Microsoft.Extensions.AI.FunctionResultContent;

namespace OnDeviceLlm.Connector.Tests;

public sealed class JsonGrammarTests
{
    [Theory]
    [InlineData("{}")]
    [InlineData("{\"a\":1,\"b\":[true,false,null,-0.5e+3,\"x\\u00e9\\n\"],\"c\":{\"d\":{}}}")]
    [InlineData("{ \"a\" : [ 1 , 2 ] }")]
    public void Valid_objects_are_accepted_and_complete(string json)
    {
        var g = new JsonGrammar();
        Assert.True(g.FeedAll(json));
        Assert.True(g.IsComplete);
        Assert.Equal("", g.Completion());
    }

    [Theory]
    [InlineData("[1]")]
    [InlineData("{a:1}")]
    [InlineData("{\"a\":01}")]
    [InlineData("{\"a\":1,}")]
    [InlineData("{\"a\":tru}")]
    [InlineData("{\"a\":\"\\x\"}")]
    [InlineData("{\"a\":1}}")]
    [InlineData("{\"a\":\"line\nbreak\"}")]
    [InlineData("{\"a\":1.}")]
    [InlineData("{\"a\":1]")]
    [InlineData("{      \"a\":1}")]
    public void Invalid_text_is_rejected(string json)
    {
        var g = new JsonGrammar();
        Assert.False(g.FeedAll(json) && g.IsComplete);
    }

    [Theory]
    [InlineData("")]
    [InlineData("{")]
    [InlineData("{\"ke")]
    [InlineData("{\"key\"")]
    [InlineData("{\"key\":")]
    [InlineData("{\"key\":[1,")]
    [InlineData("{\"key\":[1,{\"x\":\"abc\\")]
    [InlineData("{\"key\":\"\\u00")]
    [InlineData("{\"key\":-")]
    [InlineData("{\"key\":1.")]
    [InlineData("{\"key\":1e+")]
    [InlineData("{\"key\":fal")]
    [InlineData("{\"a\":1,")]
    public void Every_prefix_is_closed_by_its_completion_into_valid_json(string prefix)
    {
        var g = new JsonGrammar();
        Assert.True(g.FeedAll(prefix));
        string whole = prefix + g.Completion();
        using var doc = JsonDocument.Parse(whole);
        Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
        Assert.True(g.FeedAll(g.Completion()) && g.IsComplete, whole);
    }

    [Fact]
    public void The_tool_call_grammar_admits_only_offered_names_and_closes_any_prefix()
    {
        var g = new ToolCallGrammar(["get_weather", "get_time"]);
        Assert.True(g.FeedAll("{\"tool_calls\":[{\"name\":\"get_"));
        var scratch = g.CreateScratch();
        scratch.CopyFrom(g);
        Assert.False(scratch.FeedAll("date\""));
        scratch.CopyFrom(g);
        Assert.False(scratch.FeedAll("time2"));
        Assert.True(g.FeedAll("time\",\"arguments\":{\"zone\":\"UT"));
        string whole = "{\"tool_calls\":[{\"name\":\"get_time\",\"arguments\":{\"zone\":\"UT" + g.Completion();
        Assert.True(ToolPrompt.TryParseCalls(whole, new HashSet<string> { "get_time" }, out var calls));
        Assert.Equal("get_time", calls[0].Name);
        Assert.Equal("UT", ((JsonElement)calls[0].Arguments!["zone"]!).GetString());
    }
}

public sealed class ToolsAndJsonTests(ChatModelFixture fixture) : IClassFixture<ChatModelFixture>
{
    private static readonly ChatMessage[] Ask = [new(ChatRole.User, "Describe a cat as JSON.")];

    [Theory]
    [InlineData(1, 12)]
    [InlineData(2, 40)]
    [InlineData(3, 200)]
    [InlineData(4, 7)]
    public async Task Json_response_format_always_yields_one_valid_json_object_even_from_a_random_model(int seed, int budget)
    {
        using var client = fixture.CreateClient();
        var options = new ChatOptions { ResponseFormat = ChatResponseFormat.Json, Temperature = 1.3f, TopK = 0, TopP = 1f, Seed = seed, MaxOutputTokens = budget };

        var response = await client.GetResponseAsync(Ask, options);
        var streamed = new StringBuilder();
        await foreach (var u in client.GetStreamingResponseAsync(Ask, options)) streamed.Append(u.Text);

        using var doc = JsonDocument.Parse(response.Text);
        Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
        Assert.Equal(response.Text, streamed.ToString());
        Assert.True(response.Usage!.OutputTokenCount <= budget);
    }

    [Fact]
    public async Task A_json_schema_is_put_into_the_prompt()
    {
        using var client = fixture.CreateClient();
        var schema = JsonDocument.Parse("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"}}}").RootElement;
        var options = new ChatOptions { ResponseFormat = ChatResponseFormat.ForJsonSchema(schema, "cat"), Temperature = 0f, MaxOutputTokens = 20 };
        var plain = await client.GetResponseAsync(Ask, new ChatOptions { Temperature = 0f, MaxOutputTokens = 20 });
        var json = await client.GetResponseAsync(Ask, options);
        Assert.True(json.Usage!.InputTokenCount > plain.Usage!.InputTokenCount + 20);
        JsonDocument.Parse(json.Text).Dispose();
    }

    [Fact]
    public async Task Required_tool_mode_forces_a_well_formed_call_to_an_offered_tool()
    {
        using var client = fixture.CreateClient();
        var weather = AIFunctionFactory.Create((string city) => $"Sunny in {city}", "get_weather", "Gets the weather for a city.");
        var time = AIFunctionFactory.Create(() => "noon", "get_time", "Gets the time.");
        for (int seed = 0; seed < 4; seed++)
        {
            var options = new ChatOptions { Tools = [weather, time], ToolMode = ChatToolMode.RequireAny, Temperature = 1.2f, Seed = seed, MaxOutputTokens = 60 };
            var response = await client.GetResponseAsync([new(ChatRole.User, "Weather in Paris?")], options);

            Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
            var call = Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
            Assert.Contains(call.Name, new[] { "get_weather", "get_time" });
            Assert.StartsWith("call_", call.CallId);
            Assert.Equal("", response.Text);
        }
        var specific = new ChatOptions { Tools = [weather, time], ToolMode = ChatToolMode.RequireSpecific("get_time"), Temperature = 1f, Seed = 9, MaxOutputTokens = 60 };
        var forced = await client.GetResponseAsync([new(ChatRole.User, "Anything")], specific);
        Assert.Equal("get_time", Assert.Single(forced.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>()).Name);
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Ask,
            new ChatOptions { Tools = [weather], ToolMode = ChatToolMode.RequireSpecific("nope") }));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task Under_auto_tool_mode_an_answer_that_is_not_a_call_streams_as_text(int seed)
    {
        using var client = fixture.CreateClient();
        var tool = AIFunctionFactory.Create(() => "noon", "get_time", "Gets the time.");
        var options = new ChatOptions { Tools = [tool], ToolMode = ChatToolMode.Auto, Temperature = 1f, Seed = seed, MaxOutputTokens = 30 };
        ChatMessage[] ask = [new(ChatRole.User, "Hello?")];

        var response = await client.GetResponseAsync(ask, options);
        var streamed = new StringBuilder();
        await foreach (var u in client.GetStreamingResponseAsync(ask, options)) streamed.Append(u.Text);

        Assert.NotEqual(ChatFinishReason.ToolCalls, response.FinishReason);
        Assert.Empty(response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.True(response.Text.Length > 0);
        Assert.Equal(response.Text, streamed.ToString());
        // The tools were described to the model.
        Assert.True(response.Usage!.InputTokenCount > client.RenderPrompt(ask).Ids.Length + 50);
    }

    [Fact]
    public async Task Function_invocation_round_trip_under_UseFunctionInvocation()
    {
        using var onDevice = fixture.CreateClient();
        int calls = 0;
        var answer = AIFunctionFactory.Create(() => { calls++; return "42"; }, "get_answer", "Returns the answer.");
        using var client = new ChatClientBuilder(onDevice).UseFunctionInvocation().Build();
        var options = new ChatOptions { Tools = [answer], ToolMode = ChatToolMode.RequireAny, Temperature = 0f, MaxOutputTokens = 40 };

        var response = await client.GetResponseAsync([new(ChatRole.User, "What is the answer?")], options);

        Assert.Equal(1, calls);
        var call = Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        var result = Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>());
        Assert.Equal(call.CallId, result.CallId);
        Assert.Equal("42", result.Result?.ToString());
        // The second round (tool mode relaxed by the invoker) answers in text, having seen the rendered result.
        Assert.NotEqual(ChatFinishReason.ToolCalls, response.FinishReason);
        string prompt = onDevice.RenderPrompt(OnDeviceLlm.Connector.Tools.ToolPrompt.Rewrite([.. response.Messages], null)).Text;
        Assert.Contains("Tool result for get_answer: 42", prompt);
        Assert.Contains("{\"tool_calls\":[{\"name\":\"get_answer\"", prompt);
    }

    public sealed class WeatherPlugin
    {
        public int Calls;

        [KernelFunction("get_weather"), Description("Gets the weather for a city.")]
        public string GetWeather(string? city = null)
        {
            Calls++;
            return $"Sunny in {city ?? "town"}";
        }
    }

    [Fact]
    public async Task Semantic_Kernel_function_choice_required_invokes_the_plugin()
    {
        var builder = Kernel.CreateBuilder();
        builder.Services.AddOnDeviceLlm(TestModels.ChatModel, o => { o.Temperature = 0f; o.MaxOutputTokens = 40; });
        var plugin = new WeatherPlugin();
        builder.Plugins.AddFromObject(plugin, "weather");
        var kernel = builder.Build();
        var chat = kernel.GetRequiredService<IChatCompletionService>();
        var history = new ChatHistory();
        history.AddUserMessage("Weather in Paris?");
        var settings = new PromptExecutionSettings { FunctionChoiceBehavior = FunctionChoiceBehavior.Required() };

        var reply = await chat.GetChatMessageContentAsync(history, settings, kernel);

        Assert.True(plugin.Calls >= 1, $"the plugin was never called: {reply.Content} | {string.Join(",", reply.Items.Select(i => i.GetType().Name))} | {string.Join(" / ", history.Select(h => h.Role + ":" + string.Join(",", h.Items.Select(i => i is Microsoft.SemanticKernel.FunctionResultContent r ? "result " + r.FunctionName + "=" + r.Result : i is Microsoft.SemanticKernel.FunctionCallContent c ? "call " + c.PluginName + "." + c.FunctionName + System.Text.Json.JsonSerializer.Serialize(c.Arguments) + c.Exception : i.GetType().Name))))}");
        Assert.NotNull(reply);
        (kernel.Services as IDisposable)?.Dispose();
    }
}

using System.Text.Json;
using Microsoft.Extensions.AI;
using OnDeviceLlm.Connector.Tools;

namespace OnDeviceLlm.Connector.Tests;

public sealed class SchemaGrammarTests
{
    private const string Schema = """
        {"type":"object","properties":{
          "name":{"type":"string"},
          "age":{"type":"integer"},
          "score":{"type":"number"},
          "tags":{"type":"array","items":{"type":"string"}},
          "kind":{"enum":["cat","dog",3]},
          "ok":{"type":"boolean"},
          "home":{"type":"object","properties":{"city":{"type":"string"}}},
          "extra":{}
        }}
        """;

    private const string Valid = "{\"name\":\"Tom \\\"T\\\"\",\"age\":-3,\"score\":1.5e2,\"tags\":[\"a\",\"b\"],\"kind\":\"dog\",\"ok\":false,\"home\":{\"city\":\"Oslo\"},\"extra\":{\"x\":[1,null]}}";

    private static SchemaGrammar Grammar() => new(SchemaNode.Parse(JsonDocument.Parse(Schema).RootElement));

    /// <summary>Checks an instance against the test schema: every property, in its JSON kind.</summary>
    internal static void AssertConforms(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var r = doc.RootElement;
        Assert.Equal(JsonValueKind.String, r.GetProperty("name").ValueKind);
        Assert.True(r.GetProperty("age").TryGetInt64(out _), json);
        Assert.Equal(JsonValueKind.Number, r.GetProperty("score").ValueKind);
        Assert.All(r.GetProperty("tags").EnumerateArray(), t => Assert.Equal(JsonValueKind.String, t.ValueKind));
        Assert.Contains(r.GetProperty("kind").GetRawText(), new[] { "\"cat\"", "\"dog\"", "3" });
        Assert.Contains(r.GetProperty("ok").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
        Assert.Equal(JsonValueKind.String, r.GetProperty("home").GetProperty("city").ValueKind);
        Assert.True(r.TryGetProperty("extra", out _));
    }

    [Fact]
    public void A_conforming_compact_instance_is_accepted_and_complete()
    {
        var g = Grammar();
        Assert.True(g.FeedAll(Valid));
        Assert.True(g.IsComplete);
        AssertConforms(Valid);
    }

    [Theory]
    [InlineData("{\"age\":3")]                       // wrong order
    [InlineData("{\"name\":3")]                      // wrong type
    [InlineData("{\"name\":\"a\",\"age\":3.5")]      // integer with a fraction
    [InlineData("{\"name\":\"a\",\"age\":\"3\"")]    // integer as a string
    [InlineData("{\"name\":\"a\",\"age\":3}")]       // properties missing
    [InlineData("{\"name\":\"a\",\"age\":3,\"score\":1,\"tags\":[1]")]
    [InlineData("{\"name\":\"a\",\"age\":3,\"score\":1,\"tags\":[],\"kind\":\"cow\"")]
    [InlineData("{\"name\":\"a\",\"age\":3,\"score\":1,\"tags\":[],\"kind\":3,\"ok\":nul")]
    [InlineData("{ \"name\"")]                       // whitespace is not part of the compact form
    public void Non_conforming_text_is_rejected(string text)
    {
        var g = Grammar();
        Assert.False(g.FeedAll(text));
    }

    [Fact]
    public void Every_prefix_of_an_instance_completes_into_a_conforming_instance()
    {
        for (int n = 0; n <= Valid.Length; n++)
        {
            var g = Grammar();
            Assert.True(g.FeedAll(Valid.AsSpan(0, n)), Valid[..n]);
            string whole = Valid[..n] + g.Completion();
            AssertConforms(whole);
            Assert.True(g.FeedAll(g.Completion()) && g.IsComplete, whole);
        }
    }

    [Fact]
    public void Minimal_values_follow_the_schema()
    {
        AssertConforms(SchemaNode.Parse(JsonDocument.Parse(Schema).RootElement).Minimal());
    }
}

public sealed class SchemaOutputTests(ChatModelFixture fixture) : IClassFixture<ChatModelFixture>
{
    [Theory]
    [InlineData(1, 15)]
    [InlineData(2, 60)]
    [InlineData(3, 300)]
    public async Task A_json_schema_response_conforms_even_from_a_random_model(int seed, int budget)
    {
        using var client = fixture.CreateClient();
        var schema = JsonDocument.Parse("""
            {"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"score":{"type":"number"},
             "tags":{"type":"array","items":{"type":"string"}},"kind":{"enum":["cat","dog",3]},"ok":{"type":"boolean"},
             "home":{"type":"object","properties":{"city":{"type":"string"}}},"extra":{}}}
            """).RootElement;
        var options = new ChatOptions { ResponseFormat = ChatResponseFormat.ForJsonSchema(schema), Temperature = 1.2f, TopK = 0, TopP = 1f, Seed = seed, MaxOutputTokens = budget };

        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "A pet, please.")], options);

        SchemaGrammarTests.AssertConforms(response.Text);
        Assert.True(response.Usage!.OutputTokenCount <= budget);
    }

    [Fact]
    public async Task Forced_calls_carry_arguments_that_bind_to_the_function()
    {
        using var onDevice = fixture.CreateClient();
        var results = new List<long>();
        var add = AIFunctionFactory.Create((long a, long b) => { results.Add(a + b); return a + b; }, "add", "Adds two integers.");
        using var client = new ChatClientBuilder(onDevice).UseFunctionInvocation().Build();
        for (int seed = 0; seed < 3; seed++)
        {
            var options = new ChatOptions { Tools = [add], ToolMode = ChatToolMode.RequireAny, Temperature = 1f, Seed = seed, MaxOutputTokens = 40 };
            var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Add 2 and 3.")], options);
            var result = Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>());
            Assert.Null(result.Exception);
        }
        Assert.Equal(3, results.Count);
    }
}

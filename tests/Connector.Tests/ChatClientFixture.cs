using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Inference;

namespace OnDeviceLlm.Connector.Tests;

/// <summary>One loaded synthetic chat model shared by a test class.</summary>
public sealed class ChatModelFixture : IDisposable
{
    public LanguageModel Model { get; } = TestModels.LoadChatModel();

    /// <summary>A client with no reuse across tests' expectations: greedy unless a test asks otherwise.</summary>
    public OnDeviceChatClient CreateClient(OnDeviceChatClientOptions? options = null) => new(Model, options);

    /// <summary>
    /// Generation straight through the runtime's Generator on a fresh session: the oracle the client's option
    /// mapping is checked against. Returns the text of the new tokens (a final stop token excluded).
    /// </summary>
    public (string Text, int Tokens, FinishReason Finish) Reference(int[] prompt, SamplingOptions sampling, int maxNewTokens)
    {
        var session = Model.CreateSession();
        var generator = new Generator(session, new GenerationOptions { MaxNewTokens = maxNewTokens, Sampling = sampling }, Model.Special.Eos);
        var ids = generator.Generate(prompt).ToList();
        int count = ids.Count;
        if (generator.FinishReason == FinishReason.Stop) ids.RemoveAt(ids.Count - 1);
        return (Model.RequireTokenizer().Decode(ids.ToArray(), skipSpecialTokens: true), count, generator.FinishReason!.Value);
    }

    public void Dispose() => Model.Dispose();
}

using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;

namespace OnDeviceLlm.Connector.SemanticKernel;

/// <summary>
/// Hides ConversationId from Semantic Kernel. SK keeps the whole ChatHistory itself, and its
/// KernelFunctionInvokingChatClient (1.82) fails on a stateful service: given a ConversationId it sends only the
/// new messages and then calls Last() on an empty list when invoking a plugin ("Sequence contains no elements").
/// </summary>
internal sealed class StatelessChatClient(IChatClient inner) : DelegatingChatClient(inner)
{
    public override async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var response = await base.GetResponseAsync(messages, options, cancellationToken).ConfigureAwait(false);
        response.ConversationId = null;
        return response;
    }

    public override async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach (var update in base.GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false))
        {
            update.ConversationId = null;
            yield return update;
        }
    }

    // The wrapped client is the container's shared IChatClient, disposed by the container, not by SK's adapter.
    protected override void Dispose(bool disposing) { }
}

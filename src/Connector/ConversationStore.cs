using Microsoft.Extensions.AI;

namespace OnDeviceLlm.Connector;

/// <summary>
/// The messages of the conversations this client has answered, by ConversationId, so a caller following
/// Microsoft.Extensions.AI's stateful contract sends only its new messages. Bounded: the least recently used
/// conversation is forgotten first. Thread-safe.
/// </summary>
internal sealed class ConversationStore(int capacity)
{
    private readonly Dictionary<string, (List<ChatMessage> Messages, long LastUsed)> _conversations = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private long _clock;

    public int Capacity { get; } = capacity;

    /// <summary>A copy of the conversation's messages, or null when it is unknown or was forgotten.</summary>
    public List<ChatMessage>? Get(string id)
    {
        lock (_lock)
        {
            if (!_conversations.TryGetValue(id, out var entry)) return null;
            _conversations[id] = (entry.Messages, ++_clock);
            return [.. entry.Messages];
        }
    }

    public void Save(string id, List<ChatMessage> messages)
    {
        lock (_lock)
        {
            _conversations[id] = (messages, ++_clock);
            while (_conversations.Count > Capacity)
                _conversations.Remove(_conversations.MinBy(p => p.Value.LastUsed).Key);
        }
    }
}

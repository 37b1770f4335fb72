using OnDeviceLlm.Runtime.Inference;

namespace OnDeviceLlm.Connector;

/// <summary>
/// The KV caches kept between requests, each with the tokens it holds, evicted least recently used. A request
/// takes the cache sharing the longest prefix with its prompt, so a conversation that comes back (re-sending its
/// history, or by ConversationId) evaluates only its new tokens even when other conversations ran in between.
/// Not thread-safe: the client uses it under its request gate.
/// </summary>
internal sealed class KvCachePool(Func<InferenceSession> create, int capacity)
{
    internal sealed class Sequence(InferenceSession session)
    {
        public InferenceSession Session { get; } = session;
        /// <summary>The tokens whose keys and values the session holds (always Session.Position of them).</summary>
        public List<int> Tokens { get; } = [];
        public long LastUsed { get; set; }
    }

    private readonly List<Sequence> _sequences = [];
    private long _clock;

    public int Capacity { get; } = capacity;
    public int Count => _sequences.Count;

    /// <summary>
    /// A sequence for <paramref name="prompt"/>, truncated to the prefix it shares with it (never the whole prompt:
    /// the last prompt token must be evaluated for its logits), and how many tokens were kept.
    /// </summary>
    /// <param name="prompt">The request's tokens.</param>
    /// <param name="reuse">False: start from an empty cache whatever is kept.</param>
    public (Sequence Sequence, int Kept) Acquire(ReadOnlySpan<int> prompt, bool reuse)
    {
        Sequence? best = null;
        int bestShared = 0;
        foreach (var s in _sequences)
        {
            int shared = Shared(s, prompt);
            if (shared > bestShared || (shared == bestShared && best is not null && s.LastUsed > best.LastUsed)) { best = s; bestShared = shared; }
        }
        // Reusing a cache cuts off what follows the shared prefix. Worth it when the prompt keeps at least half of the
        // cache (the same conversation, its last answer re-tokenized a little differently); a prompt that shares only
        // a short head (another conversation with the same system prompt) takes a free slot, or else evicts the least
        // recently used cache, sparing the others.
        Sequence chosen;
        if (best is not null && bestShared > 0 && 2 * bestShared >= best.Tokens.Count) chosen = best;
        else if (_sequences.Count < Capacity) { chosen = new Sequence(create()); _sequences.Add(chosen); bestShared = 0; }
        else { chosen = _sequences.MinBy(s => s.LastUsed)!; bestShared = Shared(chosen, prompt); }

        int keep = reuse ? Math.Min(bestShared, prompt.Length - 1) : 0;
        chosen.Session.Truncate(keep);
        chosen.Tokens.RemoveRange(keep, chosen.Tokens.Count - keep);
        chosen.LastUsed = ++_clock;
        return (chosen, keep);
    }

    private static int Shared(Sequence s, ReadOnlySpan<int> prompt) =>
        System.Runtime.InteropServices.CollectionsMarshal.AsSpan(s.Tokens).CommonPrefixLength(prompt);

    /// <summary>Forgets a sequence whose cache may be half written (a failure inside a forward pass).</summary>
    public void Reset(Sequence sequence)
    {
        sequence.Session.Reset();
        sequence.Tokens.Clear();
    }
}

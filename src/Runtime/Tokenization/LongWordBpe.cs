using System.Buffers;

namespace OnDeviceLlm.Runtime.Tokenization;

/// <summary>
/// BPE for words too long for the library's BpeTokenizer, whose merge loop ends by deleting merged symbols one at a
/// time from an array, in time quadratic in the word's length (a 64 KB text without spaces takes a quarter second
/// with Gemma's vocabulary, a megabyte about a minute). The result is the library's, token for token: one symbol
/// per char (a surrogate pair is one), unknown chars as the unknown token (runs fused when asked, dropped when
/// there is none), then merges by lowest rank, leftmost on ties, with the library's check that a queued pair is
/// still current (same new token); here over a linked list, so the whole word costs O(n log n).
/// </summary>
internal sealed class LongWordBpe
{
    /// <summary>Words at least this long are merged here; shorter ones go to the library, which caches them.</summary>
    public const int MinLength = 256;

    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocab;
    private readonly Lazy<Dictionary<long, (int Rank, int Id)>> _merges;
    private readonly int _unkId;
    private readonly bool _fuseUnknown;

    private LongWordBpe(Dictionary<string, int> vocab, Lazy<Dictionary<long, (int Rank, int Id)>> merges, int unkId, bool fuseUnknown)
    {
        _vocab = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _merges = merges;
        _unkId = unkId;
        _fuseUnknown = fuseUnknown;
    }

    /// <summary>
    /// From what the library was given and accepted: every merge's parts and concatenation are in the vocabulary, no
    /// pair twice. The pair table would add about half a second to Gemma's load, for texts that mostly never need
    /// it, so it is built on the first long word, from the merges kept meanwhile as one string (smaller than the list).
    /// </summary>
    public static LongWordBpe Create(Dictionary<string, int> vocab, List<string> merges, int unkId, bool fuseUnknown)
    {
        string all = string.Concat(merges);
        int[] ends = new int[merges.Count];
        for (int i = 0, end = 0; i < merges.Count; i++) ends[i] = end += merges[i].Length;
        return new LongWordBpe(vocab, new Lazy<Dictionary<long, (int Rank, int Id)>>(() => PairTable(vocab, all, ends)), unkId, fuseUnknown);
    }

    private static Dictionary<long, (int Rank, int Id)> PairTable(Dictionary<string, int> vocab, string all, int[] ends)
    {
        var lookup = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        var table = new Dictionary<long, (int Rank, int Id)>(ends.Length);
        char[] joined = ArrayPool<char>.Shared.Rent(64);
        try
        {
            for (int rank = 0, start = 0; rank < ends.Length; start = ends[rank++])
            {
                ReadOnlySpan<char> merge = all.AsSpan(start, ends[rank] - start);
                int space = merge.IndexOf(' ');
                if (merge.Length - 1 > joined.Length)
                {
                    ArrayPool<char>.Shared.Return(joined);
                    joined = ArrayPool<char>.Shared.Rent(merge.Length);
                }
                merge[..space].CopyTo(joined);
                merge[(space + 1)..].CopyTo(joined.AsSpan(space));
                int left = lookup[merge[..space]], right = lookup[merge[(space + 1)..]];
                table.Add(Key(left, right), (rank, lookup[joined.AsSpan(0, merge.Length - 1)]));
            }
        }
        finally { ArrayPool<char>.Shared.Return(joined); }
        return table;
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Appends the word's tokens: id, and the chars it covers (offsets within the word).</summary>
    public void Encode(ReadOnlySpan<char> word, List<(int Id, int Start, int Length)> tokens)
    {
        Dictionary<long, (int Rank, int Id)> merges = _merges.Value;
        int capacity = word.Length;
        int[] id = ArrayPool<int>.Shared.Rent(capacity), start = ArrayPool<int>.Shared.Rent(capacity), length = ArrayPool<int>.Shared.Rent(capacity);
        int[] prev = ArrayPool<int>.Shared.Rent(capacity), next = ArrayPool<int>.Shared.Rent(capacity);
        try
        {
            int n = 0, unkStart = -1, unkLength = 0;
            void Add(int token, int from, int count)
            {
                id[n] = token;
                start[n] = from;
                length[n] = count;
                n++;
            }
            for (int i = 0; i < word.Length;)
            {
                int size = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
                if (_vocab.TryGetValue(word.Slice(i, size), out int token))
                {
                    if (unkStart >= 0) { Add(_unkId, unkStart, unkLength); unkStart = -1; }
                    Add(token, i, size);
                }
                else if (_unkId >= 0)
                {
                    if (unkStart >= 0 && _fuseUnknown) unkLength += size;
                    else
                    {
                        if (unkStart >= 0) Add(_unkId, unkStart, unkLength);
                        unkStart = i;
                        unkLength = size;
                    }
                }
                i += size;
            }
            if (unkStart >= 0) Add(_unkId, unkStart, unkLength);
            if (n == 0) return;

            var queue = new PriorityQueue<(int Pos, int NewId), long>(n);
            for (int i = 0; i < n; i++)
            {
                prev[i] = i - 1;
                next[i] = i + 1 < n ? i + 1 : -1;
                if (i + 1 < n && merges.TryGetValue(Key(id[i], id[i + 1]), out var m)) queue.Enqueue((i, m.Id), Priority(m.Rank, i));
            }
            while (queue.TryDequeue(out var top, out _))
            {
                int pos = top.Pos, right = next[pos];
                if (length[pos] == 0 || right < 0) continue;
                if (!merges.TryGetValue(Key(id[pos], id[right]), out var current) || current.Id != top.NewId) continue;
                id[pos] = top.NewId;
                length[pos] += length[right];
                length[right] = 0;
                next[pos] = next[right];
                if (next[pos] >= 0) prev[next[pos]] = pos;
                if (prev[pos] >= 0 && merges.TryGetValue(Key(id[prev[pos]], id[pos]), out var before))
                    queue.Enqueue((prev[pos], before.Id), Priority(before.Rank, prev[pos]));
                if (next[pos] >= 0 && merges.TryGetValue(Key(id[pos], id[next[pos]]), out var after))
                    queue.Enqueue((pos, after.Id), Priority(after.Rank, pos));
            }
            // The first symbol is never merged away (only right-hand symbols are), so the list starts at 0.
            for (int i = 0; i >= 0; i = next[i]) tokens.Add((id[i], start[i], length[i]));
        }
        finally
        {
            ArrayPool<int>.Shared.Return(id);
            ArrayPool<int>.Shared.Return(start);
            ArrayPool<int>.Shared.Return(length);
            ArrayPool<int>.Shared.Return(prev);
            ArrayPool<int>.Shared.Return(next);
        }
    }

    private static long Priority(int rank, int pos) => ((long)rank << 32) | (uint)pos;
}

using System.Numerics.Tensors;

namespace OnDeviceLlm.Runtime.Inference;

/// <summary>
/// Picks the next token from a logits vector. Order of operations as in Hugging Face generate:
/// penalties (repetition, then frequency/presence), temperature, top-k, top-p, min-p, then a draw
/// from the softmax of what is left. All buffers are sized for the vocabulary up front, so a call
/// allocates nothing. Not thread-safe: one sampler per generation.
/// </summary>
public sealed class Sampler
{
    // Top-p's first sorted prefix; a remainder this short is sorted whole rather than selected from.
    private const int FirstSortedChunk = 64;

    private readonly SamplingOptions _options;
    private readonly int _vocabSize;
    private readonly Random _random;
    private readonly bool _hasPenalty;

    // Candidates as (negated logit, token id) pairs: negated so that an ascending sort (the BCL's)
    // and the selection below put the most likely tokens first.
    private readonly float[] _keys;
    private readonly int[] _ids;
    private readonly float[] _weights;
    private readonly float[] _heap;
    private readonly int[] _counts;
    private readonly int[] _touched;

    public Sampler(SamplingOptions options, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (vocabSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, $"The vocabulary size must be positive, but it is {vocabSize}.");
        _options = options;
        _vocabSize = vocabSize;
        _random = options.Seed is int seed ? new Random(seed) : new Random();
        _hasPenalty = options.RepetitionPenalty != 1f || options.FrequencyPenalty != 0f || options.PresencePenalty != 0f;
        if (_hasPenalty)
        {
            _counts = new int[vocabSize];
            _touched = new int[vocabSize];
        }
        else
        {
            _counts = _touched = [];
        }
        if (!options.IsGreedy)
        {
            _keys = new float[vocabSize];
            _ids = new int[vocabSize];
            _weights = new float[vocabSize];
            _heap = options.TopK > 0 && options.TopK < vocabSize ? new float[options.TopK] : [];
        }
        else
        {
            _keys = _weights = _heap = [];
            _ids = [];
        }
    }

    public SamplingOptions Options => _options;

    /// <summary>Index of the largest logit; the lowest index wins ties.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        if (logits.IsEmpty) throw new ArgumentException("The logits are empty.", nameof(logits));
        return TensorPrimitives.IndexOfMax(logits);
    }

    /// <summary>
    /// Chooses a token. <paramref name="logits"/> (one per vocabulary entry) is modified in place by
    /// the penalties; <paramref name="previousTokens"/> is the prompt plus the tokens generated so far.
    /// </summary>
    public int Sample(Span<float> logits, ReadOnlySpan<int> previousTokens)
    {
        if (logits.Length != _vocabSize)
            throw new ArgumentException($"Expected {_vocabSize} logits (the vocabulary size), got {logits.Length}.", nameof(logits));

        if (_hasPenalty) ApplyPenalties(logits, previousTokens);

        if (_options.IsGreedy)
        {
            int best = TensorPrimitives.IndexOfMax(logits);
            if (float.IsNaN(logits[best])) throw new InferenceException($"The logits contain NaN (at token {best}).");
            return best;
        }

        float max = TensorPrimitives.Max(logits);
        // A NaN would break the ordering the selection relies on; all -inf leaves nothing to draw;
        // +inf makes every weight exp(inf - inf) = NaN.
        if (float.IsNaN(max)) throw new InferenceException("The logits contain NaN.");
        if (float.IsNegativeInfinity(max)) throw new InferenceException("Every logit is -infinity: no token can be sampled.");
        if (float.IsPositiveInfinity(max)) throw new InferenceException("The logits contain +infinity.");

        int n = _vocabSize;
        var keys = _keys.AsSpan(0, n);
        var ids = _ids.AsSpan(0, n);
        int count;
        int sorted = 0;
        if (_heap.Length > 0)
        {
            count = CollectTopK(logits, keys, ids, _heap);
            if (_options.TopP < 1f)
            {
                keys[..count].Sort(ids[..count]);
                sorted = count;
            }
        }
        else
        {
            TensorPrimitives.Negate(logits, keys);
            for (int i = 0; i < n; i++) ids[i] = i;
            count = n;
        }

        float temperature = _options.Temperature;
        if (_options.TopP < 1f)
            count = ApplyTopP(keys[..count], ids[..count], sorted, max, temperature, _options.TopP);

        var weights = _weights.AsSpan(0, count);
        ComputeWeights(keys[..count], max, temperature, weights);

        if (_options.MinP > 0f)
        {
            // The top token's weight is exactly exp(0) = 1, so p >= min_p * p_max is w >= min_p.
            float minP = _options.MinP;
            int kept = 0;
            for (int i = 0; i < count; i++)
            {
                if (weights[i] >= minP)
                {
                    weights[kept] = weights[i];
                    ids[kept] = ids[i];
                    kept++;
                }
            }
            count = kept;
            weights = weights[..count];
        }

        return Draw(weights, ids[..count]);
    }

    private void ApplyPenalties(Span<float> logits, ReadOnlySpan<int> previousTokens)
    {
        var counts = _counts;
        var touched = _touched;
        int distinct = 0;
        foreach (int token in previousTokens)
        {
            if ((uint)token >= (uint)_vocabSize)
            {
                for (int i = 0; i < distinct; i++) counts[touched[i]] = 0;
                throw new InferenceException($"Token id {token} in the previous tokens is outside the vocabulary of {_vocabSize}.");
            }
            if (counts[token]++ == 0) touched[distinct++] = token;
        }

        float repetition = _options.RepetitionPenalty;
        float frequency = _options.FrequencyPenalty;
        float presence = _options.PresencePenalty;
        for (int i = 0; i < distinct; i++)
        {
            int token = touched[i];
            float logit = logits[token];
            logit = logit > 0f ? logit / repetition : logit * repetition;
            logit -= counts[token] * frequency + presence;
            logits[token] = logit;
            counts[token] = 0;
        }
    }

    /// <summary>
    /// Writes the k best tokens, plus any tied with the k-th (HF keeps those), as candidates; returns
    /// how many. The k-th largest logit comes from a min-heap of the best k seen so far: nearly every
    /// logit loses one comparison against its root, so this is about one pass over the vocabulary.
    /// </summary>
    private static int CollectTopK(ReadOnlySpan<float> logits, Span<float> keys, Span<int> ids, Span<float> heap)
    {
        int k = heap.Length;
        logits[..k].CopyTo(heap);
        for (int i = k / 2 - 1; i >= 0; i--) SiftDown(heap, i);
        for (int i = k; i < logits.Length; i++)
        {
            if (logits[i] > heap[0])
            {
                heap[0] = logits[i];
                SiftDown(heap, 0);
            }
        }

        float threshold = heap[0];
        int count = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] >= threshold)
            {
                keys[count] = -logits[i];
                ids[count] = i;
                count++;
            }
        }
        return count;
    }

    private static void SiftDown(Span<float> heap, int i)
    {
        float value = heap[i];
        while (true)
        {
            int child = 2 * i + 1;
            if (child >= heap.Length) break;
            if (child + 1 < heap.Length && heap[child + 1] < heap[child]) child++;
            if (heap[child] >= value) break;
            heap[i] = heap[child];
            i = child;
        }
        heap[i] = value;
    }

    /// <summary>
    /// HF's top-p: a token survives when the probability mass of the tokens ranked strictly above it
    /// is below top_p (so the token that crosses the threshold is kept, and always the best one).
    /// Only as much of the candidate list is sorted as the walk needs, which for peaked
    /// distributions is a tiny prefix of the vocabulary.
    /// </summary>
    private int ApplyTopP(Span<float> keys, Span<int> ids, int sorted, float max, float temperature, float topP)
    {
        int count = keys.Length;
        var weights = _weights.AsSpan(0, count);
        ComputeWeights(keys, max, temperature, weights);
        double target = topP * (double)TensorPrimitives.Sum(weights);

        double above = 0;
        int kept = 0;
        while (kept < count)
        {
            if (kept == sorted)
                sorted = SortMore(keys, ids, sorted, Math.Max(FirstSortedChunk, 2 * sorted));
            if (kept > 0 && above >= target) break;
            above += MathF.Exp((-keys[kept] - max) / temperature);
            kept++;
        }
        return kept;
    }

    /// <summary>Extends the sorted prefix [0, sorted) to [0, target), keeping it ahead of the unsorted rest.</summary>
    private static int SortMore(Span<float> keys, Span<int> ids, int sorted, int target)
    {
        int count = keys.Length;
        if (target >= count || count - sorted <= FirstSortedChunk)
        {
            keys[sorted..].Sort(ids[sorted..]);
            return count;
        }
        Select(keys[sorted..], ids[sorted..], target - sorted - 1);
        keys[sorted..target].Sort(ids[sorted..target]);
        return target;
    }

    private static void ComputeWeights(ReadOnlySpan<float> keys, float max, float temperature, Span<float> weights)
    {
        // exp((logit - max) / T) with logit = -key; dividing (not multiplying by 1/T) keeps the top
        // token at exactly exp(0) = 1 even for a temperature so small that 1/T overflows.
        TensorPrimitives.Add(keys, max, weights);
        TensorPrimitives.Divide(weights, -temperature, weights);
        TensorPrimitives.Exp(weights, weights);
    }

    /// <summary>
    /// Inverse-CDF draw. Sums run per chunk with SIMD (a scalar running sum over a 256k vocabulary
    /// costs milliseconds); both passes add the same chunk sums in the same order, so the walk
    /// reaches the total exactly and r, drawn below it, always lands in some chunk.
    /// </summary>
    private int Draw(ReadOnlySpan<float> weights, ReadOnlySpan<int> ids)
    {
        const int Chunk = 1024;
        double total = 0;
        for (int start = 0; start < weights.Length; start += Chunk)
            total += TensorPrimitives.Sum(weights.Slice(start, Math.Min(Chunk, weights.Length - start)));

        double r = _random.NextDouble() * total;
        double cumulative = 0;
        for (int start = 0; start < weights.Length; start += Chunk)
        {
            var chunk = weights.Slice(start, Math.Min(Chunk, weights.Length - start));
            double chunkSum = TensorPrimitives.Sum(chunk);
            if (r >= cumulative + chunkSum)
            {
                cumulative += chunkSum;
                continue;
            }
            int lastPositive = -1;
            for (int i = 0; i < chunk.Length; i++)
            {
                if (chunk[i] <= 0f) continue;
                cumulative += chunk[i];
                lastPositive = i;
                if (r < cumulative) return ids[start + i];
            }
            // Only reached when the scalar sum of this chunk rounds a hair below its SIMD sum.
            return ids[start + lastPositive];
        }
        throw new InvalidOperationException("Unreachable: the draw fell past the total weight.");
    }

    /// <summary>
    /// Quickselect (Hoare partition, median of three): afterwards keys[k] holds the value it would
    /// have in sorted order, with nothing larger before it and nothing smaller after it. Runs of
    /// equal keys (masked -inf logits) split evenly, so they do not degrade it.
    /// </summary>
    private static void Select(Span<float> keys, Span<int> ids, int k)
    {
        int lo = 0, hi = keys.Length - 1;
        while (hi > lo)
        {
            int mid = lo + ((hi - lo) >> 1);
            if (keys[mid] < keys[lo]) Swap(keys, ids, mid, lo);
            if (keys[hi] < keys[lo]) Swap(keys, ids, hi, lo);
            if (keys[hi] < keys[mid]) Swap(keys, ids, hi, mid);
            float pivot = keys[mid];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (keys[i] < pivot) i++;
                while (keys[j] > pivot) j--;
                if (i <= j)
                {
                    Swap(keys, ids, i, j);
                    i++;
                    j--;
                }
            }
            if (k <= j) hi = j;
            else if (k >= i) lo = i;
            else return;
        }
    }

    private static void Swap(Span<float> keys, Span<int> ids, int a, int b)
    {
        (keys[a], keys[b]) = (keys[b], keys[a]);
        (ids[a], ids[b]) = (ids[b], ids[a]);
    }
}

using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Format;

/// <summary>
/// The consistency rules of a model file. The writer applies them before writing a byte (so a converter
/// fails fast, naming the problem) and the reader applies them again to whatever is on disk.
/// Each failure is a <see cref="ModelFormatException"/> with one sentence naming the problem.
/// </summary>
internal static class ModelValidator
{
    public static void Config(string path, ModelConfig c)
    {
        void Fail(string problem) => throw new ModelFormatException(path, problem);
        void Positive(int value, string name) { if (value <= 0) Fail($"the config's {name} is {value}; it must be positive."); }
        void Finite(float value, string name, bool positive)
        {
            if (!float.IsFinite(value) || (positive ? value <= 0 : value < 0))
                Fail($"the config's {name} is {value}; it must be {(positive ? "positive" : "zero or positive")} and finite.");
        }
        void Known<T>(T value, string name) where T : struct, Enum
        {
            if (!Enum.IsDefined(value)) Fail($"the config's {name} has the unknown value {Convert.ToInt32(value)}.");
        }

        if (string.IsNullOrWhiteSpace(c.Architecture)) Fail("the config names no architecture.");
        Positive(c.VocabSize, "vocab size");
        Positive(c.HiddenSize, "hidden size");
        Positive(c.NumLayers, "layer count");
        Positive(c.NumHeads, "attention head count");
        Positive(c.NumKvHeads, "key/value head count");
        Positive(c.HeadDim, "head dimension");
        Positive(c.IntermediateSize, "intermediate (FFN) size");
        Positive(c.ContextLength, "context length");
        if (c.NumHeads % c.NumKvHeads != 0)
            Fail($"the config has {c.NumHeads} attention heads, which is not a multiple of its {c.NumKvHeads} key/value heads.");

        Known(c.Norm, "norm kind");
        Known(c.Activation, "activation");
        Known(c.FeedForward, "feed-forward kind");
        Known(c.Layout, "block layout");
        Known(c.Positions, "position encoding");

        Finite(c.NormEps, "norm epsilon", positive: true);
        Finite(c.AttentionScale, "attention scale", positive: true);
        Finite(c.AttentionSoftcap, "attention soft-cap", positive: false);
        Finite(c.FinalSoftcap, "final logit soft-cap", positive: false);

        if (c.RotaryDim < 0 || c.RotaryDim > c.HeadDim || c.RotaryDim % 2 != 0)
            Fail($"the config's rotary dimension {c.RotaryDim} must be even and between 0 and the head dimension {c.HeadDim}.");
        if (c.Positions == PositionEncoding.Rope)
        {
            if (c.RotaryDim == 0) Fail("the config uses rotary positions but its rotary dimension is 0.");
            Finite(c.RopeTheta, "rope theta", positive: true);
        }

        if (c.SlidingWindow < 0) Fail($"the config's sliding window is {c.SlidingWindow}; it must be zero or positive.");
        if (c.SlidingWindow > 0 && c.SlidingLayers.Count != c.NumLayers)
            Fail($"the config has a sliding window but marks {c.SlidingLayers.Count} sliding layers for {c.NumLayers} layers.");
    }

    public static void Special(string path, SpecialTokens s, ModelConfig c)
    {
        void Check(int? id, string what)
        {
            if (id is int v && (v < 0 || v >= c.VocabSize))
                throw new ModelFormatException(path, $"the {what} token id {v} is outside the vocabulary of {c.VocabSize}.");
        }
        Check(s.Bos, "BOS");
        Check(s.Pad, "pad");
        foreach (var eos in s.Eos) Check(eos, "EOS");
        if (s.AddBos && s.Bos is null) throw new ModelFormatException(path, "the special tokens ask to add BOS but define no BOS token.");
    }

    public static void Tokenizer(string path, TokenizerFiles tokenizer)
    {
        foreach (var name in tokenizer.Files.Keys)
            if (string.IsNullOrWhiteSpace(name) || name.IndexOfAny(['/', '\\']) >= 0)
                throw new ModelFormatException(path, $"the tokenizer file name '{name}' is not a plain file name.");
    }

    /// <summary>Type, shape and block size of one tensor; returns the byte length they imply.</summary>
    public static long Tensor(string path, string name, TensorType type, long[] shape, uint blockSize)
    {
        if (string.IsNullOrEmpty(name)) throw new ModelFormatException(path, "a tensor has an empty name.");
        if (!Enum.IsDefined(type)) throw new ModelFormatException(path, $"tensor '{name}' has the unknown dtype {(byte)type}.");
        if (shape.Length == 0) throw new ModelFormatException(path, $"tensor '{name}' has no dimensions.");
        foreach (var d in shape)
            if (d <= 0) throw new ModelFormatException(path, $"tensor '{name}' has shape {Format(shape)}; every dimension must be positive.");
        if (blockSize != ModelFormat.BlockSize(type))
            throw new ModelFormatException(path, $"tensor '{name}' records quantization block size {blockSize} but {type} uses {ModelFormat.BlockSize(type)}.");
        try
        {
            return TensorTypes.ByteLength(type, shape);
        }
        catch (Exception e) when (e is ArgumentException or OverflowException)
        {
            throw new ModelFormatException(path, $"tensor '{name}' of type {type} cannot have shape {Format(shape)}: {e.Message}", e);
        }
    }

    /// <summary>Names and shapes against what the architecture expects for this config.</summary>
    public static void TensorSet(string path, ModelConfig c, IEnumerable<(string Name, long[] Shape)> tensors)
    {
        var expected = new Dictionary<string, (long[] Shape, bool Required)>(StringComparer.Ordinal);
        foreach (var (name, shape, required) in TensorNames.Expected(c)) expected[name] = (shape, required);

        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape) in tensors)
        {
            if (!seen.Add(name)) throw new ModelFormatException(path, $"tensor '{name}' appears twice.");
            if (!expected.TryGetValue(name, out var want))
                throw new ModelFormatException(path, $"tensor '{name}' is not part of a '{c.Architecture}' model with {c.NumLayers} layers.");
            if (!shape.AsSpan().SequenceEqual(want.Shape))
                throw new ModelFormatException(path, $"tensor '{name}' has shape {Format(shape)} but this config needs {Format(want.Shape)}.");
        }

        var missing = expected.Where(e => e.Value.Required && !seen.Contains(e.Key)).Select(e => e.Key).ToList();
        if (missing.Count > 0)
            throw new ModelFormatException(path, $"the required tensor '{missing[0]}' is missing" +
                (missing.Count > 1 ? $" (and {missing.Count - 1} more)." : "."));
    }

    /// <summary>Where the blobs lie: aligned, after the header, inside the file, not overlapping.</summary>
    public static void Placement(string path, IReadOnlyList<TensorEntry> tensors, long headerEnd, long fileSize)
    {
        foreach (var t in tensors)
        {
            if (t.Offset % ModelFormat.Alignment != 0)
                throw new ModelFormatException(path, $"tensor '{t.Name}' starts at offset {t.Offset}, which is not a multiple of {ModelFormat.Alignment}.");
            if (t.Offset < (ulong)headerEnd)
                throw new ModelFormatException(path, $"tensor '{t.Name}' starts at offset {t.Offset}, inside the header that ends at byte {headerEnd}.");
            if (t.Offset > (ulong)fileSize || t.ByteLength > (ulong)fileSize - t.Offset)
                throw new ModelFormatException(path, $"tensor '{t.Name}' spans bytes {t.Offset} to {t.Offset + t.ByteLength}, past the end of the file ({fileSize} bytes); the file is truncated or the offset is wrong.");
        }

        var byOffset = tensors.OrderBy(t => t.Offset).ToArray();
        for (int i = 1; i < byOffset.Length; i++)
        {
            var (a, b) = (byOffset[i - 1], byOffset[i]);
            if (b.Offset < a.Offset + a.ByteLength)
                throw new ModelFormatException(path, $"tensors '{a.Name}' (bytes {a.Offset} to {a.Offset + a.ByteLength}) and '{b.Name}' (from byte {b.Offset}) overlap.");
        }
    }

    public static string Format(ReadOnlySpan<long> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";
}

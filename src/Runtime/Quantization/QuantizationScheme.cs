using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Quantization;

/// <summary>
/// Which storage type each tensor gets at conversion. Matrices (embeddings, projections, output head)
/// take the scheme's type; vectors and the per-head norm tables stay f32, as their size is negligible
/// and their precision matters. <paramref name="EmbeddingType"/>, when set, overrides the matrix type for the
/// token embeddings and the output head (the mixed recipe keeps those at 8 bits).
/// </summary>
public sealed record QuantizationScheme(string Name, TensorType? MatrixType, TensorType? EmbeddingType = null)
{
    /// <summary>Keep every tensor in the checkpoint's own type (f32, f16 or bf16): lossless.</summary>
    public static readonly QuantizationScheme Source = new("source", null);
    public static readonly QuantizationScheme F32 = new("f32", TensorType.F32);
    public static readonly QuantizationScheme F16 = new("f16", TensorType.F16);
    public static readonly QuantizationScheme BF16 = new("bf16", TensorType.BF16);
    /// <summary>Symmetric int8, one f32 scale per output row (MediaPipe's int8).</summary>
    public static readonly QuantizationScheme Int8 = new("int8", TensorType.Int8);
    /// <summary>GGUF Q8_0 blocks.</summary>
    public static readonly QuantizationScheme Q8 = new("q8", TensorType.Q8_0);
    /// <summary>GGUF Q4_0 blocks.</summary>
    public static readonly QuantizationScheme Q4 = new("q4", TensorType.Q4_0);
    /// <summary>Q4_0 for the attention and feed-forward matrices, Q8_0 for the token embeddings and the output head.</summary>
    public static readonly QuantizationScheme Mixed = new("mixed", TensorType.Q4_0, TensorType.Q8_0);

    public static IReadOnlyList<QuantizationScheme> All { get; } = [Source, F32, F16, BF16, Int8, Q8, Q4, Mixed];

    public static QuantizationScheme Parse(string name) =>
        All.FirstOrDefault(s => string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"Unknown quantization \"{name}\"; expected one of: {string.Join(", ", All.Select(s => s.Name))}.");

    /// <summary>
    /// The stored type of one tensor. The integer types work on blocks of 32 values, so a matrix whose rows are not
    /// a multiple of 32 long falls back to f16 (or stays in its source's 16-bit type); <see cref="FallbackNote"/> says so.
    /// </summary>
    public TensorType TargetFor(string tensorName, long[] shape, TensorType sourceType)
    {
        var wanted = Wanted(tensorName, shape, sourceType);
        if (Encode.Supports(wanted, shape[^1])) return wanted;
        return sourceType == TensorType.F32 ? TensorType.F16 : sourceType;
    }

    /// <summary>A sentence for the user when <see cref="TargetFor"/> could not give a tensor the scheme's type; else null.</summary>
    public string? FallbackNote(string tensorName, long[] shape, TensorType sourceType)
    {
        var wanted = Wanted(tensorName, shape, sourceType);
        var target = TargetFor(tensorName, shape, sourceType);
        return wanted == target ? null
            : $"{tensorName} is stored as {target} instead of {wanted}: its rows of {shape[^1]} values are not a multiple of {Encode.BlockSize}.";
    }

    private TensorType Wanted(string tensorName, long[] shape, TensorType sourceType)
    {
        bool isMatrix = shape.Length == 2 && !tensorName.EndsWith("_norm.weight", StringComparison.Ordinal);
        if (!isMatrix) return TensorType.F32;
        bool embeddingOrHead = tensorName is TensorNames.TokenEmbedding or TensorNames.Output;
        return (embeddingOrHead ? EmbeddingType ?? MatrixType : MatrixType) ?? sourceType;
    }

    public override string ToString() => Name;
}

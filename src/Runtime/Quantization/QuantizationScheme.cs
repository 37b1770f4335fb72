using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Quantization;

/// <summary>
/// Which storage type each tensor gets at conversion. Matrices (embeddings, projections, output head)
/// take the scheme's type; vectors and the per-head norm tables stay f32, as their size is negligible
/// and their precision matters.
/// </summary>
public sealed record QuantizationScheme(string Name, TensorType? MatrixType)
{
    /// <summary>Keep every tensor in the checkpoint's own type (f32, f16 or bf16): lossless.</summary>
    public static readonly QuantizationScheme Source = new("source", null);
    public static readonly QuantizationScheme F32 = new("f32", TensorType.F32);
    public static readonly QuantizationScheme F16 = new("f16", TensorType.F16);
    public static readonly QuantizationScheme BF16 = new("bf16", TensorType.BF16);

    public static IReadOnlyList<QuantizationScheme> All { get; } = [Source, F32, F16, BF16];

    public static QuantizationScheme Parse(string name) =>
        All.FirstOrDefault(s => string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"Unknown quantization \"{name}\"; expected one of: {string.Join(", ", All.Select(s => s.Name))}.");

    public TensorType TargetFor(string tensorName, long[] shape, TensorType sourceType)
    {
        bool isMatrix = shape.Length == 2 && !tensorName.EndsWith("_norm.weight", StringComparison.Ordinal);
        if (!isMatrix) return TensorType.F32;
        return MatrixType ?? sourceType;
    }

    public override string ToString() => Name;
}

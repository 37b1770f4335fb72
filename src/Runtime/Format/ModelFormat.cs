using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Format;

/// <summary>Constants of the .odlm format.</summary>
public static class ModelFormat
{
    public const string Identifier = "ODLM";
    public const string Extension = ".odlm";
    /// <summary>The format version this runtime writes and reads.</summary>
    public const int Version = 1;
    /// <summary>Every tensor blob starts at a multiple of this many bytes (a cache line; enough for any SIMD load).</summary>
    public const int Alignment = 64;
    /// <summary>Size prefix, root offset and identifier: the least a file can hold before the header proper.</summary>
    internal const int MinimumHeaderBytes = 12;
    /// <summary>Where the identifier sits in a size-prefixed FlatBuffer.</summary>
    internal const int IdentifierOffset = 8;

    internal static long Align(long offset) => (offset + Alignment - 1) / Alignment * Alignment;

    /// <summary>Elements per quantization block as recorded in the tensor table; 0 for unblocked types.</summary>
    internal static uint BlockSize(TensorType type) => type is TensorType.Q8_0 or TensorType.Q4_0 ? 32u : 0u;
}

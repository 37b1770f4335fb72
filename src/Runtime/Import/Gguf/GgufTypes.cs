using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Import.Gguf;

/// <summary>GGUF metadata value types (gguf.h <c>gguf_type</c>); values are stored in files, never renumber.</summary>
public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>ggml tensor types (ggml.h <c>ggml_type</c>) that may appear in a GGUF file; values are stored in files.</summary>
public enum GgmlType : uint
{
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
}

public static class GgmlTypes
{
    /// <summary>Values per block and bytes per block (ggml's type_traits), so every known type's size can be checked.</summary>
    public static bool TryGetBlock(GgmlType type, out int blockValues, out int blockBytes)
    {
        (blockValues, blockBytes) = type switch
        {
            GgmlType.F32 => (1, 4), GgmlType.F16 => (1, 2), GgmlType.BF16 => (1, 2),
            GgmlType.Q4_0 => (32, 18), GgmlType.Q4_1 => (32, 20), GgmlType.Q5_0 => (32, 22), GgmlType.Q5_1 => (32, 24),
            GgmlType.Q8_0 => (32, 34), GgmlType.Q8_1 => (32, 36),
            GgmlType.Q2_K => (256, 84), GgmlType.Q3_K => (256, 110), GgmlType.Q4_K => (256, 144), GgmlType.Q5_K => (256, 176),
            GgmlType.Q6_K => (256, 210), GgmlType.Q8_K => (256, 292),
            GgmlType.IQ2_XXS => (256, 66), GgmlType.IQ2_XS => (256, 74), GgmlType.IQ3_XXS => (256, 98), GgmlType.IQ1_S => (256, 50),
            GgmlType.IQ4_NL => (32, 18), GgmlType.IQ3_S => (256, 110), GgmlType.IQ2_S => (256, 82), GgmlType.IQ4_XS => (256, 136),
            GgmlType.I8 => (1, 1), GgmlType.I16 => (1, 2), GgmlType.I32 => (1, 4), GgmlType.I64 => (1, 8), GgmlType.F64 => (1, 8),
            GgmlType.IQ1_M => (256, 56), GgmlType.TQ1_0 => (256, 54), GgmlType.TQ2_0 => (256, 66), GgmlType.MXFP4 => (32, 17),
            _ => (0, 0),
        };
        return blockValues > 0;
    }

    /// <summary>Our storage type for a ggml type whose bytes we read as they are (Q8_0 and Q4_0 blocks are byte-identical).</summary>
    public static TensorType? ToTensorType(GgmlType type) => type switch
    {
        GgmlType.F32 => TensorType.F32,
        GgmlType.F16 => TensorType.F16,
        GgmlType.BF16 => TensorType.BF16,
        GgmlType.Q8_0 => TensorType.Q8_0,
        GgmlType.Q4_0 => TensorType.Q4_0,
        _ => null,
    };

    public static GgmlType FromTensorType(TensorType type) => type switch
    {
        TensorType.F32 => GgmlType.F32,
        TensorType.F16 => GgmlType.F16,
        TensorType.BF16 => GgmlType.BF16,
        TensorType.Q8_0 => GgmlType.Q8_0,
        TensorType.Q4_0 => GgmlType.Q4_0,
        _ => throw new UnsupportedModelException($"Tensor type {type} has no GGUF equivalent (GGUF has no per-row int8 type); convert with --quant q8 or f16."),
    };
}

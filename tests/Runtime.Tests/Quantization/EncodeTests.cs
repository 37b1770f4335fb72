using System.Buffers.Binary;
using System.Runtime.InteropServices;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Quantization;
using OnDeviceLlm.Runtime.Tests.Compute;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Quantization;

/// <summary>Q8_0/Q4_0 bytes against llama.cpp's reference quantizers; int8's planar layout; round-trip error bounds.</summary>
public class EncodeTests
{
    /// <summary>
    /// The block the expected bytes below were computed for by an independent Python port of llama.cpp's
    /// quantize_row_q8_0_ref / quantize_row_q4_0_ref (every f32 operation emulated with struct round trips).
    /// </summary>
    private static float[] PortedBlock()
    {
        var x = new float[32];
        for (int i = 0; i < 32; i++) x[i] = ((i * 37 + 11) % 61 - 30) / 7f;
        x[9] = -4.6f;
        return x;
    }

    [Fact]
    public void Q8_0_MatchesLlamaCppReference()
    {
        var block = new byte[34];
        Encode.Q8_0Block(PortedBlock(), block);
        Assert.Equal("a328b547e88a1cbd4ff09281c557f8992bcd5f00a133d56708a93bdd6e10b143e476", Convert.ToHexString(block).ToLowerInvariant());
    }

    [Fact]
    public void Q4_0_MatchesLlamaCppReference()
    {
        var block = new byte[18];
        Encode.Q4_0Block(PortedBlock(), block);
        Assert.Equal("9a38e38c27b15ae48d37c160f49d38c26bf5", Convert.ToHexString(block).ToLowerInvariant());
    }

    [Fact]
    public void Q8_0_HandComputed_RoundsHalfAwayFromZero()
    {
        // max |x| = 127 makes d exactly 1 (f16 0x3C00) and q = roundf(x).
        var x = new float[32];
        x[0] = 127; x[1] = 2.5f; x[2] = -2.5f; x[3] = 0.49f; x[4] = -126.5f; x[5] = 3.5f;
        var block = new byte[34];
        Encode.Q8_0Block(x, block);
        Assert.Equal(0x3C00, BinaryPrimitives.ReadUInt16LittleEndian(block));
        Assert.Equal(new sbyte[] { 127, 3, -3, 0, -127, 4 }, MemoryMarshal.Cast<byte, sbyte>(block.AsSpan(2, 6)).ToArray());
        Assert.All(block.Skip(8), b => Assert.Equal(0, b));
    }

    [Fact]
    public void Q8_0_AllZeroBlock_HasZeroScaleAndValues()
    {
        var block = new byte[34];
        block.AsSpan().Fill(0xAA);
        Encode.Q8_0Block(new float[32], block);
        Assert.All(block, b => Assert.Equal(0, b));
    }

    [Fact]
    public void Q4_0_HandComputed_SignedScaleTruncationAndClamp()
    {
        // The value of largest magnitude is -8, so d = -8 / -8 = 1 and q = min(15, trunc(x + 8.5)).
        var x = new float[32];
        x[0] = -8; x[1] = 7; x[2] = 7.4f; x[3] = 0.5f; x[4] = -0.5f; x[5] = 7.5f;
        x[16] = 3; x[17] = -3; x[31] = 1.49f;
        var block = new byte[18];
        Encode.Q4_0Block(x, block);
        Assert.Equal(0x3C00, BinaryPrimitives.ReadUInt16LittleEndian(block));
        int[] low = [0, 15, 15, 9, 8, 15, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8];
        int[] high = [11, 5, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 9];
        for (int j = 0; j < 16; j++) Assert.Equal((byte)(low[j] | high[j] << 4), block[2 + j]);

        // Largest magnitude +8 (first of equal magnitudes wins): d = -1, so -8 maps to 16.5 → clamped to 15.
        x = new float[32];
        x[0] = 8; x[1] = -8; x[2] = 3;
        Encode.Q4_0Block(x, block);
        Assert.Equal(0xBC00, BinaryPrimitives.ReadUInt16LittleEndian(block));
        Assert.Equal((byte)(0 | 8 << 4), block[2]);
        Assert.Equal((byte)(15 | 8 << 4), block[3]);
        Assert.Equal((byte)(5 | 8 << 4), block[4]);
    }

    public static TheoryData<TensorType> IntegerTypes() => new() { TensorType.Int8, TensorType.Q8_0, TensorType.Q4_0 };

    [Theory, MemberData(nameof(IntegerTypes))]
    public void RoundTripError_IsWithinHalfAStep(TensorType type)
    {
        const int rows = 7, cols = 96;
        var rng = new Random(5);
        var x = new float[rows * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (rng.NextSingle() * 2 - 1) * MathF.Pow(2, rng.Next(-2, 4));
        using var tensor = EncodedTensor.Create(type, rows, cols, x);
        var row = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            tensor.Tensor.ReadRow(r, row);
            int block = type == TensorType.Int8 ? cols : 32;
            for (int b = 0; b < cols / block; b++)
            {
                var src = x.AsSpan(r * cols + b * block, block);
                float amax = 0;
                foreach (var v in src) amax = MathF.Max(amax, MathF.Abs(v));
                // One step is amax/127 (q8, int8) or amax/8 (q4, where the clamp at 15 costs a whole step on one side);
                // the f16 scale adds at most 2^-11 relative per step count.
                float step = type == TensorType.Q4_0 ? amax / 8 : amax / 127;
                float allowed = type == TensorType.Q4_0 ? step * (1 + 8f / 2048) : step * (0.5f + 127f / 2048);
                if (type == TensorType.Int8) allowed = step * (0.5f + 1e-4f);
                for (int t = 0; t < block; t++)
                    Assert.True(MathF.Abs(row[b * block + t] - src[t]) <= allowed,
                        $"{type} row {r} value {b * block + t}: {src[t]} decoded to {row[b * block + t]} (allowed error {allowed})");
            }
        }
    }

    [Fact]
    public void Int8_IsPlanar_ValuesThenRowScales()
    {
        const int rows = 3, cols = 32;
        var x = new float[rows * cols];
        for (int r = 0; r < rows; r++) x[r * cols + 1] = (r + 1) * 127f; // row r: scale r + 1, value 127 at column 1
        x[2 * cols + 2] = -254.6f;
        var stream = new MemoryStream();
        using (var encoder = new TensorEncoder(TensorType.Int8, rows, cols, stream))
        {
            encoder.Write(x.AsSpan(0, cols));
            encoder.Write(x.AsSpan(cols));
            encoder.Complete();
        }
        var bytes = stream.ToArray();
        Assert.Equal(TensorTypes.ByteLength(TensorType.Int8, [rows, cols]), bytes.Length);
        for (int r = 0; r < rows; r++)
        {
            Assert.Equal(127, (sbyte)bytes[r * cols + 1]);
            Assert.Equal(r + 1f, BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(rows * cols + r * 4)));
        }
        Assert.Equal(-85, (sbyte)bytes[2 * cols + 2]); // -254.6 / 3 = -84.87 → -85
    }

    [Fact]
    public void TensorEncoder_RejectsMissingRowsAndPartialRows()
    {
        using var encoder = new TensorEncoder(TensorType.Q8_0, 2, 32, new MemoryStream());
        Assert.Throws<ArgumentException>(() => encoder.Write(new float[33]));
        encoder.Write(new float[32]);
        Assert.Throws<InvalidOperationException>(encoder.Complete);
        Assert.Throws<ArgumentException>(() => new TensorEncoder(TensorType.Q4_0, 2, 48, new MemoryStream()));
    }

    [Fact]
    public void Schemes_ChooseTypesPerTensor()
    {
        long[] matrix = [128, 64], wide = [64, 172], vector = [64];
        var mixed = QuantizationScheme.Parse("MIXED");
        Assert.Equal(TensorType.Q8_0, mixed.TargetFor(TensorNames.TokenEmbedding, matrix, TensorType.F32));
        Assert.Equal(TensorType.Q8_0, mixed.TargetFor(TensorNames.Output, matrix, TensorType.BF16));
        Assert.Equal(TensorType.Q4_0, mixed.TargetFor(TensorNames.Layer(0, TensorNames.AttnQ), matrix, TensorType.F32));
        Assert.Equal(TensorType.Q4_0, mixed.TargetFor(TensorNames.Layer(3, TensorNames.FfnGate), matrix, TensorType.F16));
        Assert.Equal(TensorType.F32, mixed.TargetFor(TensorNames.Layer(0, TensorNames.AttnNorm), vector, TensorType.BF16));
        Assert.Equal(TensorType.F32, mixed.TargetFor(TensorNames.Layer(0, TensorNames.AttnQNorm), [4, 16], TensorType.F32));
        Assert.Equal(TensorType.Int8, QuantizationScheme.Int8.TargetFor(TensorNames.TokenEmbedding, matrix, TensorType.F32));
        Assert.Equal(TensorType.Q8_0, QuantizationScheme.Q8.TargetFor(TensorNames.Layer(1, TensorNames.FfnDown), matrix, TensorType.F32));

        // Rows that are not whole blocks of 32 fall back to a 16-bit type, and the converter is told.
        string down = TensorNames.Layer(0, TensorNames.FfnDown);
        Assert.Equal(TensorType.F16, QuantizationScheme.Q4.TargetFor(down, wide, TensorType.F32));
        Assert.Equal(TensorType.BF16, QuantizationScheme.Int8.TargetFor(down, wide, TensorType.BF16));
        Assert.Contains("172", QuantizationScheme.Q4.FallbackNote(down, wide, TensorType.F32));
        Assert.Null(QuantizationScheme.Q4.FallbackNote(down, matrix, TensorType.F32));
        Assert.Null(QuantizationScheme.F16.FallbackNote(down, wide, TensorType.F32));
        Assert.Throws<ArgumentException>(() => QuantizationScheme.Parse("q5"));
    }
}

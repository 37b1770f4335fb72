using System.Runtime.InteropServices;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Cli.Bench;

/// <summary>
/// Random-weight models of DESIGN.md's benchmark shapes, written once as .odlm files so a benchmark maps its
/// weights from the page cache exactly as a converted model would. Random bytes with every scale and exponent
/// forced into a small finite range: the kernels do real work on them, and no value is NaN or subnormal.
/// </summary>
internal static class SyntheticModels
{
    /// <summary>The file for <paramref name="shape"/> with matrices of <paramref name="matrixType"/> (<paramref name="quant"/> names it), written on first use.</summary>
    public static string Ensure(string shape, TensorType matrixType, string quant, string directory)
    {
        var config = SyntheticShapes.ByName(shape);
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, $"{shape}-{quant}.odlm");
        if (File.Exists(path))
        {
            try
            {
                using var existing = ModelFile.Open(path);
                return path;
            }
            catch (ModelFormatException) { File.Delete(path); }
        }
        ulong seed = 42;
        var tensors = new List<TensorToWrite>();
        foreach (var (name, shapeOf, required) in TensorNames.Expected(config))
        {
            if (!required) continue;
            bool matrix = shapeOf.Length == 2 && !name.EndsWith("norm.weight", StringComparison.Ordinal);
            var type = matrix ? matrixType : TensorType.F32;
            ulong tensorSeed = seed++;
            tensors.Add(new TensorToWrite(name, type, shapeOf, stream => WriteRandom(stream, type, shapeOf, tensorSeed)));
        }
        ModelWriter.Write(path, config, new SpecialTokens { Bos = 2, Eos = [1] }, TokenizerFiles.None,
            new Provenance($"synthetic:{shape}", "odllm bench", quant) { Created = DateTimeOffset.UnixEpoch },
            tensors);
        return path;
    }

    private static void WriteRandom(Stream stream, TensorType type, long[] shape, ulong seed)
    {
        long cols = shape[^1], rows = shape.Length < 2 ? 1 : shape[..^1].Aggregate(1L, (a, b) => a * b);
        // Whole rows per chunk, so blocks never straddle two chunks; int8's scale table follows all rows.
        long rowBytes = type == TensorType.Int8 ? cols : TensorTypes.ByteLength(type, [1, cols]);
        long rowsPerChunk = Math.Max(1, (16L << 20) / rowBytes);
        var buffer = new byte[rowsPerChunk * rowBytes];
        var rng = new Xorshift(seed);
        for (long done = 0; done < rows; done += rowsPerChunk)
        {
            int bytes = (int)(Math.Min(rowsPerChunk, rows - done) * rowBytes);
            var chunk = buffer.AsSpan(0, bytes);
            rng.Fill(chunk);
            Tame(type, chunk);
            stream.Write(chunk);
        }
        if (type == TensorType.Int8)
        {
            var scales = new float[rows];
            Array.Fill(scales, 0.001f);
            stream.Write(MemoryMarshal.AsBytes(scales.AsSpan()));
        }
    }

    /// <summary>Small finite values: f32/f16/bf16 magnitudes in [2^-7, 2^-6), block scales 0.001 (f16).</summary>
    private static void Tame(TensorType type, Span<byte> chunk)
    {
        switch (type)
        {
            case TensorType.F32:
                foreach (ref uint v in MemoryMarshal.Cast<byte, uint>(chunk)) v = (v & 0x807FFFFFu) | 0x3C000000u;
                break;
            case TensorType.F16:
                foreach (ref ushort v in MemoryMarshal.Cast<byte, ushort>(chunk)) v = (ushort)((v & 0x83FF) | 0x2000);
                break;
            case TensorType.BF16:
                foreach (ref ushort v in MemoryMarshal.Cast<byte, ushort>(chunk)) v = (ushort)((v & 0x807F) | 0x3C00);
                break;
            case TensorType.Q8_0:
            case TensorType.Q4_0:
                int blockBytes = type == TensorType.Q8_0 ? 34 : 18;
                for (int b = 0; b + blockBytes <= chunk.Length; b += blockBytes)
                    MemoryMarshal.Write(chunk[b..], (Half)0.001f);
                break;
        }
    }

    private struct Xorshift(ulong seed)
    {
        private ulong _s = seed * 0x9E3779B97F4A7C15UL + 1;

        public void Fill(Span<byte> bytes)
        {
            var words = MemoryMarshal.Cast<byte, ulong>(bytes);
            for (int i = 0; i < words.Length; i++)
            {
                _s ^= _s << 13; _s ^= _s >> 7; _s ^= _s << 17;
                words[i] = _s;
            }
            for (int i = words.Length * 8; i < bytes.Length; i++) bytes[i] = (byte)(_s >> (8 * (i & 7)));
        }
    }
}

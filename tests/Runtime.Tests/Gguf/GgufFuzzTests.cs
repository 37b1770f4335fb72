using System.Buffers.Binary;
using OnDeviceLlm.Runtime.Import.Gguf;
using OnDeviceLlm.Runtime.Tokenization;
using Xunit;
using Xunit.Abstractions;
using static OnDeviceLlm.Runtime.Tests.Gguf.GgufTestFiles;

namespace OnDeviceLlm.Runtime.Tests.Gguf;

/// <summary>
/// Hundreds of mutated copies of a small valid GGUF — truncations, flipped bytes anywhere in the header, counts,
/// lengths and type fields overwritten with extreme values — must only ever raise the runtime's typed exceptions.
/// </summary>
public sealed class GgufFuzzTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("odllm-gguf-fuzz-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void MutatedFilesOnlyRaiseTypedExceptions()
    {
        byte[] valid = Build(LlamaMetadata(), LlamaTensors(GgmlType.Q8_0));
        long headerEnd;
        using (var file = GgufFile.Open(Write(valid, "valid.gguf"))) headerEnd = file.DataOffset;
        var random = new Random(1234);
        var outcomes = new Dictionary<string, int>();
        ulong[] extremes = [0, 1, 4, 0xFF, 0xFFFF_FFFF, 0x7FFF_FFFF_FFFF_FFFF, ulong.MaxValue, 1UL << 32, (ulong)valid.Length];

        for (int i = 0; i < 400; i++)
        {
            byte[] bytes;
            switch (i % 4)
            {
                case 0: // truncation anywhere
                    bytes = valid[..random.Next(valid.Length)];
                    break;
                case 1: // a few flipped bytes in the header
                    bytes = (byte[])valid.Clone();
                    for (int k = random.Next(1, 4); k > 0; k--) bytes[random.Next((int)headerEnd)] ^= (byte)random.Next(1, 256);
                    break;
                case 2: // an extreme 64-bit value at a random header position (counts, lengths, dims, offsets)
                    bytes = (byte[])valid.Clone();
                    BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(random.Next((int)headerEnd - 8)), extremes[random.Next(extremes.Length)]);
                    break;
                default: // an extreme 32-bit value (types, dimension counts, versions)
                    bytes = (byte[])valid.Clone();
                    BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(random.Next((int)headerEnd - 4)), (uint)extremes[random.Next(extremes.Length)]);
                    break;
            }
            string outcome = Exercise(Write(bytes, $"m{i}.gguf"), i);
            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
        }
        output.WriteLine(string.Join(", ", outcomes.Select(o => $"{o.Key}: {o.Value}")));
        // Most mutations must be detected, and the detections must come from the reader's own checks.
        Assert.True(outcomes.GetValueOrDefault(nameof(ModelFormatException)) > 150, string.Join(", ", outcomes));
    }

    /// <summary>Opens, imports and reads the tokenizer of one file; returns the outcome, failing on any untyped exception.</summary>
    private static string Exercise(string path, int index)
    {
        var before = GC.GetTotalAllocatedBytes(precise: false);
        try
        {
            using (GgufImporter.Import(path)) { }
            TextTokenizer.LoadFromPath(path).Encode("ab a");
            return "ok";
        }
        catch (Exception ex) when (ex is ModelFormatException or UnsupportedModelException or TokenizerException)
        {
            return ex.GetType().Name;
        }
        catch (Exception ex)
        {
            Assert.Fail($"mutation {index}: {ex.GetType().Name}: {ex.Message}\n{ex.StackTrace}");
            return "";
        }
        finally
        {
            long allocated = GC.GetTotalAllocatedBytes(precise: false) - before;
            Assert.True(allocated < 64L << 20, $"mutation {index} allocated {allocated:N0} bytes.");
        }
    }

    private string Write(byte[] bytes, string name)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }
}

using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Model;
using Xunit;
using Xunit.Abstractions;

namespace OnDeviceLlm.Runtime.Tests.Format;

/// <summary>Runs alone: other tests allocating in parallel would blur the resident-set measurement.</summary>
[CollectionDefinition(nameof(ModelFileMemoryTests), DisableParallelization = true)]
public sealed class ModelFileMemoryCollection;

[Collection(nameof(ModelFileMemoryTests))]
public sealed class ModelFileMemoryTests(ITestOutputHelper output) : IDisposable
{
    private readonly ScratchFolder _dir = new();
    public void Dispose() => _dir.Dispose();

    [Fact]
    public void OpeningA200MegabyteModelDoesNotReadItsWeightsIntoMemory()
    {
        // ~205 MB: two f32 [50000, 512] matrices dominate.
        var config = new ModelConfig
        {
            Architecture = "llama", VocabSize = 50_000, HiddenSize = 512, NumLayers = 1, NumHeads = 8, NumKvHeads = 8,
            HeadDim = 64, IntermediateSize = 1024, ContextLength = 2048, RotaryDim = 64, AttentionScale = 0.125f,
        };
        var chunk = new byte[1 << 20];
        new Random(3).NextBytes(chunk);
        var tensors = TensorNames.Expected(config).Where(e => e.Required).Select(e =>
        {
            long length = TensorTypes.ByteLength(TensorType.F32, e.Shape);
            return new TensorToWrite(e.Name, TensorType.F32, e.Shape, s =>
            {
                for (long done = 0; done < length; done += chunk.Length) s.Write(chunk, 0, (int)Math.Min(chunk.Length, length - done));
            });
        }).ToList();
        string path = _dir.File("big.odlm");
        ModelWriter.Write(path, config, new SpecialTokens(), TokenizerFiles.None, new Provenance("synthetic", "test", "f32"), tensors);
        long size = new FileInfo(path).Length;
        Assert.True(size > 200_000_000, $"the synthetic model is only {size} bytes");

        // Open once first so JIT and type loading do not count against the measured open.
        using (ModelFile.Open(path)) { }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long before = ResidentBytes();
        using var model = ModelFile.Open(path);
        long grown = ResidentBytes() - before;
        output.WriteLine($"file {size} bytes; resident set grew by {grown} bytes on open");

        Assert.True(grown < size / 4, $"opening a {size}-byte model grew the resident set by {grown} bytes");
        // The mapping is real: the last bytes of the last tensor are readable and are what was written.
        var last = model.Tensors[^1];
        long tail = last.ByteLength % chunk.Length == 0 ? chunk.Length : last.ByteLength % chunk.Length;
        Assert.True(last.Bytes[^(int)tail..].SequenceEqual(chunk.AsSpan(0, (int)tail)));
    }

    /// <summary>VmRSS where /proc exists (what the OS charges the process), the runtime's working set elsewhere.</summary>
    private static long ResidentBytes()
    {
        const string status = "/proc/self/status";
        if (File.Exists(status))
            foreach (var line in File.ReadLines(status))
                if (line.StartsWith("VmRSS:"))
                    return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0]) * 1024;
        return Environment.WorkingSet;
    }
}

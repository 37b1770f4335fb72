using System.Buffers.Binary;
using OnDeviceLlm.Runtime.Conversion;
using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Import.Gguf;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Quantization;
using Xunit;
using static OnDeviceLlm.Runtime.Tests.Gguf.GgufTestFiles;

namespace OnDeviceLlm.Runtime.Tests.Gguf;

public sealed class GgufFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("odllm-gguf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Save(byte[] bytes, string name = "model.gguf")
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void Stories260KHeaderAndTensorsAreReadInPlace()
    {
        using var file = GgufFile.Open(Stories260KTests.GgufPath);
        Assert.Equal(3u, file.Version);
        Assert.Equal(32, file.Alignment);
        Assert.Equal(48, file.Tensors.Count);
        Assert.Equal(5, file.Metadata.Int("llama.block_count"));
        Assert.Equal(512, file.Metadata.Array<string>("tokenizer.ggml.tokens")!.Length);
        var embedding = file.GetTensor("token_embd.weight");
        Assert.Equal([512L, 64], embedding.Shape);
        Assert.Equal(TensorType.F32, embedding.Type);
        // llama2.c's .bin holds the same bytes right after its 7-int header (SOURCES.md checked every tensor).
        byte[] bin = File.ReadAllBytes(Path.Combine(Stories260KTests.Folder, "stories260K.bin"));
        Assert.True(embedding.Bytes.SequenceEqual(bin.AsSpan(28, 512 * 64 * 4)));
    }

    [Fact]
    public void EveryMetadataValueTypeRoundTripsInVersions3And2()
    {
        var metadata = new List<KeyValuePair<string, GgufValue>>
        {
            new("u8", new(GgufValueType.UInt8, (byte)200)), new("i8", new(GgufValueType.Int8, (sbyte)-100)),
            new("u16", new(GgufValueType.UInt16, (ushort)60000)), new("i16", new(GgufValueType.Int16, (short)-30000)),
            new("u32", new(GgufValueType.UInt32, 4000000000u)), new("i32", new(GgufValueType.Int32, -2000000000)),
            new("f32", new(GgufValueType.Float32, 1.5f)), new("bool", new(GgufValueType.Bool, true)),
            new("str", new(GgufValueType.String, "héllo ✓")), new("u64", new(GgufValueType.UInt64, ulong.MaxValue)),
            new("i64", new(GgufValueType.Int64, long.MinValue)), new("f64", new(GgufValueType.Float64, Math.PI)),
            new("a.str", new(GgufValueType.Array, new[] { "", "x", "yz" }, GgufValueType.String)),
            new("a.f32", new(GgufValueType.Array, new[] { 1f, -2f }, GgufValueType.Float32)),
            new("a.i32", new(GgufValueType.Array, new[] { 3, -4 }, GgufValueType.Int32)),
            new("a.bool", new(GgufValueType.Array, new[] { true, false }, GgufValueType.Bool)),
            new("a.u8", new(GgufValueType.Array, new byte[] { 1, 2, 3 }, GgufValueType.UInt8)),
            new("a.i64", new(GgufValueType.Array, new[] { long.MaxValue }, GgufValueType.Int64)),
            new("a.f64", new(GgufValueType.Array, new[] { 0.25 }, GgufValueType.Float64)),
            new("a.empty", new(GgufValueType.Array, Array.Empty<ushort>(), GgufValueType.UInt16)),
            new("a.nested", new(GgufValueType.Array, new object[]
            {
                new GgufValue(GgufValueType.Array, new[] { 1, 2 }, GgufValueType.Int32),
                new GgufValue(GgufValueType.Array, new[] { "a" }, GgufValueType.String),
            }, GgufValueType.Array)),
        };
        byte[] v3 = GgufWriter.MetadataOnly(metadata);
        byte[] v2 = (byte[])v3.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(v2.AsSpan(4), 2);
        foreach (var (bytes, version) in new[] { (v3, 3u), (v2, 2u) })
        {
            using var file = GgufFile.Open(Save(bytes, $"v{version}.gguf"));
            Assert.Equal(version, file.Version);
            Assert.Empty(file.Tensors);
            Assert.Equal(metadata.Select(kv => kv.Key), file.Metadata.Values.Keys);
            foreach (var (key, expected) in metadata)
            {
                var actual = file.Metadata.Values[key];
                Assert.Equal(expected.Type, actual.Type);
                if (key == "a.nested")
                {
                    var inner = (object[])actual.Value;
                    Assert.Equal(new[] { 1, 2 }, ((GgufValue)inner[0]).Value);
                    Assert.Equal(new[] { "a" }, ((GgufValue)inner[1]).Value);
                }
                else Assert.Equal(expected.Value, actual.Value);
            }
            Assert.Equal(4000000000L, file.Metadata.Integer("u32"));
            Assert.Throws<ModelFormatException>(() => file.Metadata.Int("u32"));
            Assert.Throws<ModelFormatException>(() => file.Metadata.String("u32"));
        }
    }

    [Fact]
    public void ImportKeepsQ8BlocksAndUndoesTheRopePermutationOfQAndK()
    {
        // Each Q/K row holds one Q8_0 block whose first value is the row's index in the GGUF.
        byte[] Fill(string name, int length)
        {
            if (!name.Contains("attn_q") && !name.Contains("attn_k") && !name.Contains("attn_v")) return new byte[length];
            var bytes = new byte[length];
            for (int row = 0; row < length / 34; row++)
            {
                BitConverter.TryWriteBytes(bytes.AsSpan(row * 34, 2), (Half)1f);
                bytes[row * 34 + 2] = (byte)row;
            }
            return bytes;
        }
        string gguf = Save(Build(LlamaMetadata(), LlamaTensors(GgmlType.Q8_0), Fill));
        string odlm = Path.Combine(_dir, "model.odlm");
        ModelConverter.Convert(gguf, odlm, QuantizationScheme.Source);
        using var model = ModelFile.Open(odlm);
        Assert.Equal(Vocab, model.Config.VocabSize);
        Assert.Equal(KvHeads, model.Config.NumKvHeads);
        Assert.False(model.Config.TiedEmbeddings);
        Assert.Equal("{{ messages }}", model.Special.ChatTemplate);

        int[] FirstValues(string name)
        {
            var t = model.Find(name)!;
            Assert.Equal(TensorType.Q8_0, t.Type);
            return Enumerable.Range(0, t.Rows).Select(r => (int)t.Bytes[r * 34 + 2]).ToArray();
        }
        int[] Unpermuted(int heads) => Enumerable.Range(0, heads)
            .SelectMany(h => Enumerable.Range(0, HeadDim / 2).Select(i => h * HeadDim + 2 * i)
                .Concat(Enumerable.Range(0, HeadDim / 2).Select(i => h * HeadDim + 2 * i + 1))).ToArray();
        Assert.Equal(Unpermuted(Heads), FirstValues("blk.0.attn_q.weight"));
        Assert.Equal(Unpermuted(KvHeads), FirstValues("blk.0.attn_k.weight"));
        Assert.Equal(Enumerable.Range(0, KvHeads * HeadDim), FirstValues("blk.0.attn_v.weight"));
    }

    [Fact]
    public void MissingOutputMeansTiedEmbeddingsAndTheTokenizerIsEmbedded()
    {
        string gguf = Save(Build(LlamaMetadata(), LlamaTensors(GgmlType.F16, withOutput: false)));
        using var model = LanguageModel.Load(gguf);
        Assert.True(model.Config.TiedEmbeddings);
        Assert.Equal(TensorType.F16, model.File.Find("blk.0.ffn_up.weight")!.Type);
        Assert.Equal(1, model.Special.Bos);
        Assert.Equal([2], model.Special.Eos);
        Assert.Equal([1, 6, 7], model.EncodePrompt("aab"));
        Assert.Equal(Vocab, model.CreateSession().Prefill([1, 6, 7]).Length);
    }

    [Theory]
    [InlineData(GgmlType.IQ2_XXS)]
    [InlineData(GgmlType.TQ1_0)]
    [InlineData(GgmlType.MXFP4)]
    public void UnsupportedTensorTypesAreNamed(GgmlType type)
    {
        var tensors = LlamaTensors(GgmlType.F32);
        tensors[^2] = (tensors[^2].Name, [256, Hidden], type); // ffn_down, rows long enough for a K-quant block
        var metadata = LlamaMetadata();
        metadata[5] = Kv("llama.feed_forward_length", 256u);
        for (int i = 0; i < tensors.Count; i++)
            if (tensors[i].Name is "blk.0.ffn_gate.weight" or "blk.0.ffn_up.weight") tensors[i] = (tensors[i].Name, [Hidden, 256], GgmlType.F32);
        string gguf = Save(Build(metadata, tensors));
        using (var file = GgufFile.Open(gguf)) Assert.Equal(type, file.Find("blk.0.ffn_down.weight")!.Type);
        var ex = Assert.Throws<UnsupportedModelException>(() => GgufImporter.Import(gguf).Dispose());
        Assert.Contains(type.ToString(), ex.Message);
        Assert.Contains("blk.0.ffn_down.weight", ex.Message);
    }

    [Fact]
    public void UnsupportedArchitectureIsNamed()
    {
        var metadata = LlamaMetadata();
        metadata[0] = Kv("general.architecture", "mamba");
        var ex = Assert.Throws<UnsupportedModelException>(() => GgufImporter.Import(Save(Build(metadata, LlamaTensors(GgmlType.F32)))).Dispose());
        Assert.Contains("\"mamba\"", ex.Message);
    }

    public static IEnumerable<object[]> MalformedCases()
    {
        byte[] valid = Build(LlamaMetadata(), LlamaTensors(GgmlType.F32));
        byte[] With(Action<byte[]> change) { var b = (byte[])valid.Clone(); change(b); return b; }
        int firstKeyLength = 24, firstValueType = firstKeyLength + 8 + "general.architecture".Length;
        yield return ["bad magic", With(b => b[0] = (byte)'X'), "not a GGUF file"];
        yield return ["empty", Array.Empty<byte>(), "too short"];
        yield return ["truncated header", valid[..100], "truncated"];
        yield return ["version 4", With(b => b[4] = 4), "version 4"];
        yield return ["big-endian", With(b => BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), 3)), "big-endian"];
        yield return ["absurd tensor count", With(b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), ulong.MaxValue / 2)), "tensors"];
        yield return ["absurd metadata count", With(b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), 1UL << 40)), "metadata entries"];
        yield return ["absurd string length", With(b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(firstKeyLength), 1UL << 62)), "string of"];
        yield return ["unknown value type", With(b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(firstValueType), 77)), "unknown value type 77"];
        yield return ["tensor past the end", valid[..^64], "past the end"];
    }

    [Theory, MemberData(nameof(MalformedCases))]
    public void MalformedFilesAreModelFormatExceptionsNamingTheProblem(string name, byte[] bytes, string fragment)
    {
        string path = Save(bytes, name.Replace(' ', '-') + ".gguf");
        var ex = Assert.Throws<ModelFormatException>(() => GgufFile.Open(path).Dispose());
        Assert.Equal(path, ex.Path);
        Assert.Contains(fragment, ex.Message);
    }

    [Fact]
    public void TensorInfoProblemsAreNamed()
    {
        var cases = new (string Fragment, Func<List<(string Name, long[] Dims, GgmlType Type)>, List<(string Name, long[] Dims, GgmlType Type)>> Change)[]
        {
            ("5 dimensions", t => { t[0] = (t[0].Name, [2, 2, 2, 2, Hidden * Vocab / 16], GgmlType.F32); return t; }),
            ("not a multiple of the Q8_0 block size", t => { t[0] = (t[0].Name, [Hidden + 1, Vocab], GgmlType.Q8_0); return t; }),
            ("unknown ggml type id 99", t => { t[0] = (t[0].Name, t[0].Dims, (GgmlType)99); return t; }),
        };
        foreach (var (fragment, change) in cases)
        {
            var tensors = change(LlamaTensors(GgmlType.F32));
            // Build cannot size an unknown type; write the header with a placeholder size instead.
            var infos = tensors.Select((t, i) => new GgufTensorInfo(t.Name, t.Type, t.Dims, i * 4096L, 0)).ToList();
            using var stream = new MemoryStream();
            GgufWriter.WriteHeader(stream, LlamaMetadata(), infos);
            stream.SetLength(stream.Length + 4096L * infos.Count);
            var ex = Assert.Throws<ModelFormatException>(() => GgufFile.Open(Save(stream.ToArray())).Dispose());
            Assert.Contains(fragment, ex.Message);
        }
    }

    [Fact]
    public void VersionOneIsUnsupported()
    {
        byte[] bytes = Build(LlamaMetadata(), LlamaTensors(GgmlType.F32));
        bytes[4] = 1;
        var ex = Assert.Throws<UnsupportedModelException>(() => GgufFile.Open(Save(bytes)).Dispose());
        Assert.Contains("version 1", ex.Message);
    }

    [Fact]
    public void AGgufWithoutTheExtensionIsRecognizedByItsMagic()
    {
        string path = Save(File.ReadAllBytes(Stories260KTests.GgufPath), "stories260K.bin-download");
        Assert.True(GgufFile.IsGguf(path));
        Assert.False(GgufFile.IsGguf(Path.Combine(Stories260KTests.Folder, "stories260K.bin")));
        using var model = LanguageModel.Load(path);
        Assert.Equal([1], model.EncodePrompt(""));
        Assert.Equal(512, OnDeviceLlm.Runtime.Tokenization.TextTokenizer.LoadFromPath(path).VocabSize);
    }
}

using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using OnDeviceLlm.Runtime.Import.HuggingFace;
using OnDeviceLlm.Runtime.Model;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Import;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("odllm-safetensors-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private static string FixturesFolder
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Connector.sln"))) dir = dir.Parent;
            Assert.NotNull(dir);
            return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "fixtures"));
        }
    }

    /// <summary>Writes a safetensors file from a raw header string, optionally lying about the header length.</summary>
    private static void WriteRaw(string path, string header, byte[] data, ulong? headerLength = null)
    {
        var headerBytes = Encoding.UTF8.GetBytes(header);
        using var stream = File.Create(path);
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, headerLength ?? (ulong)headerBytes.Length);
        stream.Write(prefix);
        stream.Write(headerBytes);
        stream.Write(data);
    }

    /// <summary>Writes a well-formed safetensors file holding the given tensors back to back.</summary>
    private static void Write(string path, params (string Name, string DType, long[] Shape, byte[] Data)[] tensors)
    {
        var header = new Dictionary<string, object> { ["__metadata__"] = new Dictionary<string, string> { ["format"] = "pt" } };
        var data = new MemoryStream();
        foreach (var t in tensors)
        {
            header[t.Name] = new { dtype = t.DType, shape = t.Shape, data_offsets = new[] { data.Length, data.Length + t.Data.Length } };
            data.Write(t.Data);
        }
        WriteRaw(path, JsonSerializer.Serialize(header), data.ToArray());
    }

    private static byte[] Floats(params float[] values) => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    [Fact]
    public void FixtureCheckpoints_ListTheTensorsOfTheReference()
    {
        var folders = Directory.GetDirectories(FixturesFolder).Where(d => File.Exists(Path.Combine(d, "model.safetensors"))).ToArray();
        Assert.NotEmpty(folders);
        Assert.Contains(folders, f => Path.GetFileName(f) == "llama");
        foreach (var folder in folders)
        {
            using var reference = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "reference.json")));
            var expected = reference.RootElement.GetProperty("weights").GetProperty("tensors");
            using var checkpoint = SafeTensorsCheckpoint.Open(folder);
            Assert.Equal(expected.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal), checkpoint.Names.Order(StringComparer.Ordinal));
            foreach (var entry in expected.EnumerateObject())
            {
                var tensor = checkpoint.Get(entry.Name);
                Assert.Equal(entry.Value.GetProperty("dtype").GetString(), tensor.DType);
                Assert.Equal(entry.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()), tensor.Shape);
                Assert.Equal(tensor.ElementCount * (tensor.DType == "F32" ? 4 : 2), tensor.ByteLength);
            }
        }
    }

    [Fact]
    public void GemmaBf16_DecodesToTheF32Weights_RoundedToBf16()
    {
        using var f32 = SafeTensorsCheckpoint.Open(Path.Combine(FixturesFolder, "gemma"));
        using var bf16 = SafeTensorsCheckpoint.Open(Path.Combine(FixturesFolder, "gemma-bf16"));
        Assert.Equal(f32.Names.Order(StringComparer.Ordinal), bf16.Names.Order(StringComparer.Ordinal));
        foreach (string name in f32.Names)
        {
            var a = f32.Get(name);
            var b = bf16.Get(name);
            Assert.Equal(TensorType.F32, a.Type);
            Assert.Equal(TensorType.BF16, b.Type);
            Assert.Equal(a.Shape, b.Shape);
            var exact = new float[a.ElementCount];
            var rounded = new float[b.ElementCount];
            a.CopyRowsAsFloat32(0, (int)a.Rows, exact);
            b.CopyRowsAsFloat32(0, (int)b.Rows, rounded);
            for (int i = 0; i < exact.Length; i++)
            {
                Assert.True(Math.Abs(rounded[i] - exact[i]) <= 1e-2 * Math.Abs(exact[i]), $"{name}[{i}]: {rounded[i]} vs {exact[i]}");
                // torch rounds to nearest, ties to even.
                uint bits = BitConverter.SingleToUInt32Bits(exact[i]);
                uint expectedBits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000;
                Assert.Equal(BitConverter.UInt32BitsToSingle(expectedBits), rounded[i]);
            }
        }
    }

    [Fact]
    public void Decode_F32_F16_Bf16_AndRowRanges()
    {
        ushort[] bf16Bits = [0x3F80, 0xC000, 0x3E20, 0x7F80, 0x0000, 0x8000];
        float[] bf16Values = [1f, -2f, 0.15625f, float.PositiveInfinity, 0f, -0f];
        Half[] halves = [(Half)1.5f, (Half)(-0.25f), (Half)65504f, (Half)6e-5f];
        Write(Path.Combine(_temp, "model.safetensors"),
            ("b", "BF16", [3, 2], MemoryMarshal.AsBytes(bf16Bits.AsSpan()).ToArray()),
            ("h", "F16", [2, 2], MemoryMarshal.AsBytes(halves.AsSpan()).ToArray()),
            ("f", "F32", [3], Floats(1f, 2.5f, -3f)),
            ("s", "F32", [], Floats(7f)));
        using var checkpoint = SafeTensorsCheckpoint.Open(_temp);

        var b = checkpoint.Get("b");
        var all = new float[6];
        b.CopyRowsAsFloat32(0, 3, all);
        Assert.Equal(bf16Values, all);
        Assert.True(float.IsNegative(all[5]));
        var middle = new float[2];
        b.CopyRowsAsFloat32(1, 1, middle);
        Assert.Equal(new[] { 0.15625f, float.PositiveInfinity }, middle);
        Assert.Equal(bf16Bits[2], BinaryPrimitives.ReadUInt16LittleEndian(b.Bytes[4..]));

        var h = new float[2];
        checkpoint.Get("h").CopyRowsAsFloat32(1, 1, h);
        Assert.Equal(new[] { 65504f, (float)(Half)6e-5f }, h);

        var f = new float[3];
        checkpoint.Get("f").CopyRowsAsFloat32(0, 1, f);
        Assert.Equal(new[] { 1f, 2.5f, -3f }, f);
        Assert.Equal(1, checkpoint.Get("f").Rows);

        var s = new float[1];
        checkpoint.Get("s").CopyRowsAsFloat32(0, 1, s);
        Assert.Equal(7f, s[0]);

        Assert.Throws<ArgumentOutOfRangeException>(() => b.CopyRowsAsFloat32(2, 2, new float[4]));
        Assert.Throws<ArgumentException>(() => b.CopyRowsAsFloat32(0, 2, new float[3]));
    }

    [Fact]
    public void UnsupportedDtype_IsListed_ButReadingItsTypeNamesTheDtypeAndTensor()
    {
        Write(Path.Combine(_temp, "model.safetensors"),
            ("q", "I8", [4], [1, 2, 3, 4]),
            ("d", "F64", [1], new byte[8]));
        using var checkpoint = SafeTensorsCheckpoint.Open(_temp);
        var q = checkpoint.Get("q");
        Assert.Equal("I8", q.DType);
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, q.Bytes.ToArray());
        var e = Assert.Throws<UnsupportedModelException>(() => q.Type);
        Assert.Contains("I8", e.Message);
        Assert.Contains("'q'", e.Message);
        Assert.Throws<UnsupportedModelException>(() => q.CopyRowsAsFloat32(0, 1, new float[4]));
        Assert.Contains("F64", Assert.Throws<UnsupportedModelException>(() => checkpoint.Get("d").Type).Message);
    }

    [Fact]
    public void ShardedCheckpoint_LoadsEveryTensorFromItsShard()
    {
        Write(Path.Combine(_temp, "model-00001-of-00002.safetensors"),
            ("a", "F32", [2], Floats(1f, 2f)),
            ("b", "F32", [1], Floats(3f)));
        Write(Path.Combine(_temp, "model-00002-of-00002.safetensors"),
            ("c", "F32", [2, 1], Floats(4f, 5f)));
        File.WriteAllText(Path.Combine(_temp, "model.safetensors.index.json"), """
            {"metadata": {"total_size": 20},
             "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                            "c": "model-00002-of-00002.safetensors"}}
            """);
        using var checkpoint = SafeTensorsCheckpoint.Open(_temp);
        Assert.Equal(["a", "b", "c"], checkpoint.Names.Order(StringComparer.Ordinal));
        Assert.True(checkpoint.Contains("c"));
        Assert.False(checkpoint.Contains("d"));
        var c = new float[2];
        checkpoint.Get("c").CopyRowsAsFloat32(0, 2, c);
        Assert.Equal(new[] { 4f, 5f }, c);
        var b = new float[1];
        checkpoint.Get("b").CopyRowsAsFloat32(0, 1, b);
        Assert.Equal(3f, b[0]);

        var missing = Assert.Throws<ModelFormatException>(() => checkpoint.Get("lm_head.weight"));
        Assert.Contains("lm_head.weight", missing.Message);
        Assert.Equal(_temp, missing.Path);
    }

    [Fact]
    public void Dispose_InvalidatesTheViews()
    {
        Write(Path.Combine(_temp, "model.safetensors"), ("a", "F32", [1], Floats(1f)));
        var checkpoint = SafeTensorsCheckpoint.Open(_temp);
        var a = checkpoint.Get("a");
        checkpoint.Dispose();
        Assert.Throws<ObjectDisposedException>(() => a.Bytes.Length);
        Assert.Throws<ObjectDisposedException>(() => checkpoint.Get("a"));
    }

    private const string GoodEntry = """{"dtype":"F32","shape":[2],"data_offsets":[0,8]}""";

    /// <summary>Each case: the header (or null for raw bytes), data bytes, a header-length override, and a phrase the message must contain.</summary>
    public static TheoryData<string, string?, int, ulong?, string> CorruptFiles => new()
    {
        { "empty", null, 0, null, "too short" },
        { "five bytes", null, 5, null, "too short" },
        { "header past end", "{}", 0, 1000, "past the end" },
        { "header over 100 MB", "{}", 0, 1UL << 62, "100 MB" },
        { "not json", "{\"a\": ", 8, null, "not valid JSON" },
        { "not an object", "[1, 2]", 8, null, "not an object" },
        { "entry not an object", """{"a": 3}""", 8, null, "not an object" },
        { "unknown field", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"offset":0}}""", 8, null, "unknown field 'offset'" },
        { "missing dtype", """{"a":{"shape":[2],"data_offsets":[0,8]}}""", 8, null, "no dtype" },
        { "missing offsets", """{"a":{"dtype":"F32","shape":[2]}}""", 8, null, "no data_offsets" },
        { "negative dim", """{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}""", 8, null, "non-negative integer" },
        { "fractional dim", """{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}""", 8, null, "non-negative integer" },
        { "three offsets", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}}""", 8, null, "[begin, end]" },
        { "offsets past data", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 8, null, "past the end" },
        { "end before begin", """{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}""", 8, null, "end before they begin" },
        { "size mismatch", """{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 12, null, "needs 12 bytes" },
        { "overlap", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12, null, "overlap" },
        { "duplicate name", "{\"a\":" + GoodEntry + ",\"a\":" + GoodEntry + "}", 8, null, "twice" },
        { "bad metadata", """{"__metadata__":{"format":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8, null, "__metadata__" },
        { "overflowing shape", """{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}""", 8, null, "too large" },
    };

    [Theory]
    [MemberData(nameof(CorruptFiles))]
    public void CorruptFile_RaisesModelFormatException_NamingTheFile(string label, string? header, int dataBytes, ulong? headerLength, string phrase)
    {
        string path = Path.Combine(_temp, "model.safetensors");
        if (header is null) File.WriteAllBytes(path, new byte[dataBytes]);
        else WriteRaw(path, header, new byte[dataBytes], headerLength);

        var e = Assert.Throws<ModelFormatException>(() => SafeTensorsCheckpoint.Open(_temp));
        Assert.Equal(path, e.Path);
        Assert.True(e.Message.Contains(phrase, StringComparison.Ordinal), $"{label}: '{e.Message}' lacks '{phrase}'");
    }

    [Fact]
    public void FolderWithoutWeights_RaisesModelFormatException()
    {
        var e = Assert.Throws<ModelFormatException>(() => SafeTensorsCheckpoint.Open(_temp));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Throws<ModelFormatException>(() => SafeTensorsCheckpoint.Open(Path.Combine(_temp, "nope")));
    }

    [Theory]
    [InlineData("""{"weight_map": {"a": "missing.safetensors"}}""", "does not exist")]
    [InlineData("""{"weight_map": {"a": "../outside.safetensors"}}""", "not a file inside")]
    [InlineData("""{"weight_map": {"b": "shard.safetensors"}}""", "is not in it")]
    [InlineData("""{"weight_map": {"a": 3}}""", "not a shard file name")]
    [InlineData("""{"metadata": {}}""", "weight_map")]
    [InlineData("""{"weight_map": """, "not valid JSON")]
    public void BadIndex_RaisesModelFormatException(string index, string phrase)
    {
        Write(Path.Combine(_temp, "shard.safetensors"), ("a", "F32", [1], Floats(1f)));
        File.WriteAllText(Path.Combine(_temp, "model.safetensors.index.json"), index);
        var e = Assert.Throws<ModelFormatException>(() => SafeTensorsCheckpoint.Open(_temp));
        Assert.Contains(phrase, e.Message);
    }
}

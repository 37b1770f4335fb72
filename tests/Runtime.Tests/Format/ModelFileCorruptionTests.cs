using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Model;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Format;

/// <summary>Each broken file must give a ModelFormatException naming the file and the specific problem.</summary>
public sealed class ModelFileCorruptionTests : IDisposable
{
    private readonly ScratchFolder _dir = new();
    public void Dispose() => _dir.Dispose();

    private static void AssertRejected(string path, params string[] phrases)
    {
        var e = Assert.Throws<ModelFormatException>(() => ModelFile.Open(path).Dispose());
        Assert.Equal(path, e.Path);
        Assert.StartsWith(path + ": ", e.Message);
        foreach (var phrase in phrases) Assert.Contains(phrase, e.Problem);
    }

    private string Raw(Header header, long? length = null)
    {
        string path = _dir.File("broken.odlm");
        FormatTestModels.WriteRaw(path, header, length);
        return path;
    }

    private static Header Valid => FormatTestModels.ValidHeader();

    private static Header WithTensors(Header h, Func<List<TensorEntry>, List<TensorEntry>> change) =>
        h with { Tensors = change(h.Tensors.ToList()) };

    [Fact]
    public void TheRawHelperWritesAFileTheReaderAccepts()
    {
        // Guards the corruption cases below: each differs from an accepted file in one respect only.
        using var model = ModelFile.Open(Raw(Valid));
        Assert.Equal(Valid.Tensors.Count, model.Tensors.Count);
    }

    [Fact]
    public void EmptyFile()
    {
        string path = _dir.File("empty.odlm");
        File.WriteAllBytes(path, []);
        AssertRejected(path, "empty");
    }

    [Fact]
    public void MissingFile() => AssertRejected(_dir.File("absent.odlm"), "does not exist");

    [Fact]
    public void TruncatedAtSeveralPoints()
    {
        string valid = _dir.File("valid.odlm");
        FormatTestModels.WriteValid(valid);
        var bytes = File.ReadAllBytes(valid);
        int headerEnd = 4 + BitConverter.ToInt32(bytes, 0);

        var cases = new (int Length, string[] Phrases)[]
        {
            (3, ["3 bytes", "shorter than a model header"]),
            (11, ["11 bytes", "shorter than a model header"]),
            (64, ["truncated", "header declares"]),
            (headerEnd - 1, ["truncated", "header declares"]),
            (headerEnd, ["past the end of the file"]),
            (bytes.Length - 1, ["past the end of the file", $"({bytes.Length - 1} bytes)"]),
        };
        foreach (var (length, phrases) in cases)
        {
            string path = _dir.File($"cut{length}.odlm");
            File.WriteAllBytes(path, bytes[..length]);
            AssertRejected(path, phrases);
        }
    }

    [Fact]
    public void WrongIdentifier()
    {
        string path = _dir.File("gguf.odlm");
        FormatTestModels.WriteValid(path);
        var bytes = File.ReadAllBytes(path);
        "GGUF"u8.CopyTo(bytes.AsSpan(8));
        File.WriteAllBytes(path, bytes);
        AssertRejected(path, "not an .odlm model file", "'GGUF'");
    }

    [Fact]
    public void RandomGarbage()
    {
        var random = new Random(42);
        foreach (int length in new[] { 12, 100, 5000 })
        {
            var bytes = new byte[length];
            random.NextBytes(bytes);
            string path = _dir.File($"garbage{length}.odlm");
            File.WriteAllBytes(path, bytes);
            AssertRejected(path, "not an .odlm model file");
        }
    }

    [Fact]
    public void GarbageBehindAValidPrefixAndIdentifier()
    {
        var random = new Random(7);
        var bytes = new byte[4096];
        random.NextBytes(bytes);
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 4), 4000);
        "ODLM"u8.CopyTo(bytes.AsSpan(8));
        string path = _dir.File("garbage.odlm");
        File.WriteAllBytes(path, bytes);
        AssertRejected(path, "not a valid FlatBuffer");
    }

    [Fact]
    public void HeaderBytesFlippedInsideTheFlatBuffer()
    {
        string path = _dir.File("flipped.odlm");
        FormatTestModels.WriteValid(path);
        var bytes = File.ReadAllBytes(path);
        // The root table offset: pointing it past the header can only be caught by the verifier.
        BitConverter.TryWriteBytes(bytes.AsSpan(4, 4), 0x7FFF_0000);
        File.WriteAllBytes(path, bytes);
        AssertRejected(path, "not a valid FlatBuffer");
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(0xFFFF_FFF0u)]
    public void ImpossibleHeaderSize(uint declared)
    {
        string path = _dir.File("prefix.odlm");
        FormatTestModels.WriteValid(path);
        var bytes = File.ReadAllBytes(path);
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 4), declared);
        File.WriteAllBytes(path, bytes);
        AssertRejected(path, $"declares {declared} bytes, which no valid header has");
    }

    [Fact]
    public void UnsupportedVersion() => AssertRejected(Raw(Valid with { FormatVersion = 2 }), "format version 2", "reads version 1");

    public static TheoryData<string, string> BadConfigs => new()
    {
        { "kv", "not a multiple of its 3 key/value heads" },
        { "hidden", "hidden size is 0" },
        { "vocab", "vocab size is -5" },
        { "rotaryOdd", "rotary dimension 7" },
        { "rotaryWide", "rotary dimension 32" },
        { "rotaryZero", "rotary positions but its rotary dimension is 0" },
        { "sliding", "marks 1 sliding layers for 2 layers" },
        { "norm", "norm kind has the unknown value 9" },
        { "eps", "norm epsilon is NaN" },
        { "scale", "attention scale is 0" },
        { "arch", "names no architecture" },
    };

    private static ModelConfig Break(ModelConfig c, string what) => what switch
    {
        "kv" => c with { NumKvHeads = 3 },
        "hidden" => c with { HiddenSize = 0 },
        "vocab" => c with { VocabSize = -5 },
        "rotaryOdd" => c with { RotaryDim = 7 },
        "rotaryWide" => c with { RotaryDim = 32 },
        "rotaryZero" => c with { RotaryDim = 0 },
        "sliding" => c with { SlidingLayers = [true] },
        "norm" => c with { Norm = (NormKind)9 },
        "eps" => c with { NormEps = float.NaN },
        "scale" => c with { AttentionScale = 0 },
        "arch" => c with { Architecture = "" },
        _ => throw new ArgumentOutOfRangeException(nameof(what)),
    };

    [Theory, MemberData(nameof(BadConfigs))]
    public void ConfigOutOfRange(string what, string phrase) =>
        AssertRejected(Raw(Valid with { Config = Break(Valid.Config, what) }), phrase);

    [Fact]
    public void SpecialTokenOutsideTheVocabulary() =>
        AssertRejected(Raw(Valid with { Special = Valid.Special with { Eos = [1, 96] } }), "EOS token id 96", "vocabulary of 96");

    [Fact]
    public void TensorOffsetPastTheEnd()
    {
        var h = WithTensors(Valid, ts => { ts[^1] = ts[^1] with { Offset = ts[^1].Offset + 64 * 1024 }; return ts; });
        long honestEnd = (long)(Valid.Tensors[^1].Offset + Valid.Tensors[^1].ByteLength);
        AssertRejected(Raw(h, honestEnd), $"'{h.Tensors[^1].Name}'", "past the end of the file");
    }

    [Fact]
    public void TensorOffsetInsideTheHeader()
    {
        var h = WithTensors(Valid, ts => { ts[0] = ts[0] with { Offset = 0 }; return ts; });
        AssertRejected(Raw(h), $"'{h.Tensors[0].Name}'", "inside the header");
    }

    [Fact]
    public void MisalignedOffset()
    {
        var h = WithTensors(Valid, ts => { ts[2] = ts[2] with { Offset = ts[2].Offset + 8 }; return ts; });
        AssertRejected(Raw(h), $"'{h.Tensors[2].Name}'", "not a multiple of 64");
    }

    [Fact]
    public void OverlappingTensors()
    {
        var h = WithTensors(Valid, ts => { ts[3] = ts[3] with { Offset = ts[2].Offset }; return ts; });
        AssertRejected(Raw(h), "overlap", $"'{h.Tensors[2].Name}'", $"'{h.Tensors[3].Name}'");
    }

    [Fact]
    public void ByteLengthMismatch()
    {
        var h = WithTensors(Valid, ts => { ts[1] = ts[1] with { ByteLength = ts[1].ByteLength + 4 }; return ts; });
        AssertRejected(Raw(h), $"'{h.Tensors[1].Name}'", $"records {h.Tensors[1].ByteLength} bytes", $"takes {h.Tensors[1].ByteLength - 4}");
    }

    [Fact]
    public void UnknownDtype()
    {
        var h = WithTensors(Valid, ts => { ts[0] = ts[0] with { Type = (TensorType)42 }; return ts; });
        AssertRejected(Raw(h), $"'{h.Tensors[0].Name}'", "unknown dtype 42");
    }

    [Fact]
    public void NonPositiveDimension()
    {
        var h = WithTensors(Valid, ts => { ts[0] = ts[0] with { Shape = [0, 32] }; return ts; });
        AssertRejected(Raw(h), $"'{h.Tensors[0].Name}'", "every dimension must be positive");
    }

    [Fact]
    public void WrongBlockSize()
    {
        var h = WithTensors(Valid, ts =>
        {
            int i = ts.FindIndex(t => t.Type == TensorType.Q4_0);
            ts[i] = ts[i] with { BlockSize = 64 };
            return ts;
        });
        AssertRejected(Raw(h), "block size 64", "Q4_0 uses 32");
    }

    [Fact]
    public void DuplicateTensorName()
    {
        var h = FormatTestModels.Layout(WithTensors(Valid, ts => { ts.Add(ts[0]); return ts; }));
        AssertRejected(Raw(h), $"'{h.Tensors[0].Name}' appears twice");
    }

    [Fact]
    public void MissingRequiredTensor()
    {
        string gate = TensorNames.Layer(1, TensorNames.FfnGate);
        var h = FormatTestModels.Layout(WithTensors(Valid, ts => ts.Where(t => t.Name != gate).ToList()));
        AssertRejected(Raw(h), $"required tensor '{gate}' is missing");
    }

    [Fact]
    public void WrongShape()
    {
        // [vocab, hidden] stored as [hidden, vocab]: same byte length, so only the architecture check sees it.
        var h = WithTensors(Valid, ts =>
        {
            int i = ts.FindIndex(t => t.Name == TensorNames.TokenEmbedding);
            ts[i] = ts[i] with { Shape = [ts[i].Shape[1], ts[i].Shape[0]] };
            return ts;
        });
        AssertRejected(Raw(h), $"'{TensorNames.TokenEmbedding}' has shape [32, 96]", "needs [96, 32]");
    }

    [Fact]
    public void UnknownTensorName()
    {
        var extra = new TensorEntry("blk.5.attn_q.weight", TensorType.F32, [64, 32], 0, 0, 64 * 32 * 4);
        var h = FormatTestModels.Layout(WithTensors(Valid, ts => { ts.Add(extra); return ts; }));
        AssertRejected(Raw(h), "'blk.5.attn_q.weight' is not part of a 'gemma2' model");
    }
}

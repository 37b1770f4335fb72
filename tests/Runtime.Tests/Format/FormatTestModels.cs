using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Tests.Format;

/// <summary>Small valid models and a scratch folder for the format tests.</summary>
internal static class FormatTestModels
{
    /// <summary>A Gemma-2-like config with every field away from its default, so a dropped field shows up.</summary>
    public static ModelConfig Config() => new()
    {
        Architecture = "gemma2",
        VocabSize = 96,
        HiddenSize = 32,
        NumLayers = 2,
        NumHeads = 4,
        NumKvHeads = 2,
        HeadDim = 16,
        IntermediateSize = 64,
        ContextLength = 256,
        Norm = NormKind.RmsNormPlusOne,
        NormEps = 1e-6f,
        Activation = Activation.GeluTanh,
        FeedForward = FeedForwardKind.Gated,
        Layout = BlockLayout.Sandwich,
        Positions = PositionEncoding.Rope,
        RotaryDim = 8,
        RopeTheta = 50000f,
        ScaleEmbeddings = true,
        AttentionScale = 0.0625f,
        AttentionSoftcap = 50f,
        FinalSoftcap = 30f,
        SlidingWindow = 16,
        SlidingLayers = [true, false],
        QkNorm = true,
        TiedEmbeddings = true,
    };

    public static SpecialTokens Special() => new()
    {
        Bos = 2, Eos = [1, 7], Pad = 0, AddBos = true,
        ChatTemplate = "{% for m in messages %}<start_of_turn>{{ m.content }}{% endfor %}",
    };

    public static TokenizerFiles Tokenizer() => new(new Dictionary<string, byte[]>
    {
        ["tokenizer.json"] = "{\"model\":{\"type\":\"BPE\"}}"u8.ToArray(),
        ["tokenizer_config.json"] = [0, 1, 2, 255],
    });

    public static Provenance Provenance() => new("hf:google/gemma-2-tiny", "odllm 0.1.0-test", "mixed");

    /// <summary>Every required tensor plus two optional biases, cycling through all storage types.</summary>
    public static List<(string Name, TensorType Type, long[] Shape, byte[] Data)> Tensors(ModelConfig config, int seed = 1)
    {
        var random = new Random(seed);
        var types = Enum.GetValues<TensorType>();
        var result = new List<(string, TensorType, long[], byte[])>();
        int i = 0;
        foreach (var (name, shape, required) in TensorNames.Expected(config))
        {
            if (!required && name != TensorNames.Layer(0, TensorNames.AttnQBias) && name != TensorNames.OutputNormBias) continue;
            // Quantized block types need rows that are a multiple of 32 elements.
            var type = types[i++ % types.Length];
            if (shape[^1] % 32 != 0 && type is TensorType.Q8_0 or TensorType.Q4_0) type = TensorType.F16;
            var data = new byte[TensorTypes.ByteLength(type, shape)];
            random.NextBytes(data);
            result.Add((name, type, shape, data));
        }
        return result;
    }

    public static List<TensorToWrite> ToWrite(IEnumerable<(string Name, TensorType Type, long[] Shape, byte[] Data)> tensors) =>
        tensors.Select(t => new TensorToWrite(t.Name, t.Type, t.Shape, s => s.Write(t.Data))).ToList();

    /// <summary>Writes the standard small model to <paramref name="path"/> and returns its tensors.</summary>
    public static List<(string Name, TensorType Type, long[] Shape, byte[] Data)> WriteValid(string path)
    {
        var config = Config();
        var tensors = Tensors(config);
        ModelWriter.Write(path, config, Special(), Tokenizer(), Provenance(), ToWrite(tensors));
        return tensors;
    }

    /// <summary>A header for the standard small model with tensors laid out as the writer would.</summary>
    internal static Header ValidHeader()
    {
        var config = Config();
        var entries = Tensors(config).Select(t => new TensorEntry(t.Name, t.Type, t.Shape, ModelFormat.BlockSize(t.Type), 0,
            (ulong)t.Data.Length)).ToList();
        return Layout(new Header(ModelFormat.Version, config, Special(), Tokenizer(), Provenance(), entries));
    }

    /// <summary>Assigns consecutive aligned offsets after the header, keeping each entry's recorded byte length.</summary>
    internal static Header Layout(Header header)
    {
        long offset = ModelFormat.Align(header.Serialize().Length);
        var entries = new List<TensorEntry>();
        foreach (var t in header.Tensors)
        {
            entries.Add(t with { Offset = (ulong)offset });
            offset = ModelFormat.Align(offset + (long)t.ByteLength);
        }
        return header with { Tensors = entries };
    }

    /// <summary>
    /// Writes a header as given, bypassing the writer's checks, followed by zeros up to the end of the last
    /// tensor (or exactly <paramref name="length"/> bytes).
    /// </summary>
    internal static void WriteRaw(string path, Header header, long? length = null)
    {
        var bytes = header.Serialize();
        long end = bytes.Length;
        foreach (var t in header.Tensors) end = Math.Max(end, (long)(t.Offset + t.ByteLength));
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write);
        file.Write(bytes);
        file.SetLength(length ?? end);
    }
}

/// <summary>A fresh folder under the system temp folder, deleted with everything in it on dispose.</summary>
internal sealed class ScratchFolder : IDisposable
{
    public ScratchFolder() => Directory.CreateDirectory(Root);
    public string Root { get; } = Path.Combine(Path.GetTempPath(), "odllm-format-" + Guid.NewGuid().ToString("N"));
    public string File(string name) => Path.Combine(Root, name);
    public void Dispose() => Directory.Delete(Root, recursive: true);
}

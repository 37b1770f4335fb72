using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Model;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Format;

public sealed class ModelFileRoundTripTests : IDisposable
{
    private readonly ScratchFolder _dir = new();
    public void Dispose() => _dir.Dispose();

    [Fact]
    public void EveryFieldAndEveryTensorByteSurvivesAWriteAndOpen()
    {
        string path = _dir.File("tiny.odlm");
        var before = DateTimeOffset.FromUnixTimeMilliseconds(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        var tensors = FormatTestModels.WriteValid(path);
        var after = DateTimeOffset.UtcNow;

        using var model = ModelFile.Open(path);
        Assert.Equal(path, model.Path);
        Assert.Equal(new FileInfo(path).Length, model.FileSize);
        Assert.Equal(ModelFormat.Version, model.FormatVersion);

        var expected = FormatTestModels.Config();
        Assert.Equal(expected with { SlidingLayers = [] }, model.Config with { SlidingLayers = [] });
        Assert.Equal(expected.SlidingLayers, model.Config.SlidingLayers);

        var special = FormatTestModels.Special();
        Assert.Equal(special.Bos, model.Special.Bos);
        Assert.Equal(special.Eos, model.Special.Eos);
        Assert.Equal(special.Pad, model.Special.Pad);
        Assert.Equal(special.AddBos, model.Special.AddBos);
        Assert.Equal(special.ChatTemplate, model.Special.ChatTemplate);

        var tokenizer = FormatTestModels.Tokenizer();
        Assert.Equal(tokenizer.Files.Keys.Order(), model.Tokenizer.Files.Keys.Order());
        foreach (var (name, bytes) in tokenizer.Files) Assert.Equal(bytes, model.Tokenizer.Files[name]);

        var provenance = FormatTestModels.Provenance();
        Assert.Equal(provenance.Source, model.Provenance.Source);
        Assert.Equal(provenance.ConverterVersion, model.Provenance.ConverterVersion);
        Assert.Equal(provenance.Quantization, model.Provenance.Quantization);
        Assert.InRange(model.Provenance.Created!.Value, before, after);

        Assert.Equal(tensors.Select(t => t.Name), model.Tensors.Select(t => t.Name));
        foreach (var (name, type, shape, data) in tensors)
        {
            var t = model.Get(name);
            Assert.Same(t, model.Find(name));
            Assert.Equal(type, t.Type);
            Assert.Equal(shape, t.Shape);
            Assert.Equal(data.Length, t.ByteLength);
            Assert.True(t.Bytes.SequenceEqual(data), $"bytes of {name} differ");
        }
    }

    /// <summary>Real tokenizers put tables far past 32 KiB into the header, where FlatBuffers' C# verifier used to reject them.</summary>
    [Fact]
    public void AMultiMegabyteTokenizerAndThousandsOfTensorsSurviveAWriteAndOpen()
    {
        string path = _dir.File("big-header.odlm");
        var tokenizer = new TokenizerFiles(new Dictionary<string, byte[]>
        {
            ["tokenizer.json"] = File.ReadAllBytes(Path.Combine(TestPaths.Models, "llama2-tokenizer", "tokenizer.json")),
            ["tokenizer_config.json"] = File.ReadAllBytes(Path.Combine(TestPaths.Models, "llama2-tokenizer", "tokenizer_config.json")),
        });
        var config = FormatTestModels.Config() with { NumLayers = 200, SlidingWindow = 0, SlidingLayers = [] };
        var tensors = FormatTestModels.Tensors(config);
        ModelWriter.Write(path, config, FormatTestModels.Special(), tokenizer, FormatTestModels.Provenance(), FormatTestModels.ToWrite(tensors));

        using var model = ModelFile.Open(path);
        Assert.True(tensors.Count > 2000, $"only {tensors.Count} tensors");
        Assert.Equal(tokenizer.Files["tokenizer.json"], model.Tokenizer.Files["tokenizer.json"]);
        Assert.Equal(tensors.Select(t => t.Name), model.Tensors.Select(t => t.Name));
        var last = tensors[^1];
        Assert.True(model.Get(last.Name).Bytes.SequenceEqual(last.Data));
    }

    [Fact]
    public void AbsentOptionalSpecialTokensStayAbsentAndAnExplicitCreationTimeIsKept()
    {
        string path = _dir.File("plain.odlm");
        var config = FormatTestModels.Config() with { TiedEmbeddings = false, SlidingWindow = 0, SlidingLayers = [] };
        var created = new DateTimeOffset(2024, 5, 6, 7, 8, 9, 123, TimeSpan.Zero);
        ModelWriter.Write(path, config, new SpecialTokens(), TokenizerFiles.None,
            FormatTestModels.Provenance() with { Created = created }, FormatTestModels.ToWrite(FormatTestModels.Tensors(config)));

        using var model = ModelFile.Open(path);
        Assert.Null(model.Special.Bos);
        Assert.Null(model.Special.Pad);
        Assert.Empty(model.Special.Eos);
        Assert.Null(model.Special.ChatTemplate);
        Assert.True(model.Tokenizer.IsEmpty);
        Assert.Empty(model.Config.SlidingLayers);
        Assert.False(model.Config.TiedEmbeddings);
        Assert.NotNull(model.Find(TensorNames.Output));
        Assert.Equal(created, model.Provenance.Created);
    }

    [Fact]
    public void SameInputsGiveTheSameBytes()
    {
        var config = FormatTestModels.Config();
        var tensors = FormatTestModels.Tensors(config);
        var provenance = FormatTestModels.Provenance() with { Created = DateTimeOffset.UnixEpoch.AddDays(1) };
        string a = _dir.File("a.odlm"), b = _dir.File("b.odlm");
        ModelWriter.Write(a, config, FormatTestModels.Special(), FormatTestModels.Tokenizer(), provenance, FormatTestModels.ToWrite(tensors));
        // Reversed insertion order of the tokenizer dictionary must not change the file.
        var tokenizer = new TokenizerFiles(FormatTestModels.Tokenizer().Files.Reverse().ToDictionary());
        ModelWriter.Write(b, config, FormatTestModels.Special(), tokenizer, provenance, FormatTestModels.ToWrite(tensors));
        Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));
    }

    [Fact]
    public unsafe void TensorsPointIntoTheMappingAtAlignedOffsets()
    {
        string path = _dir.File("tiny.odlm");
        var tensors = FormatTestModels.WriteValid(path);
        var fileBytes = File.ReadAllBytes(path);

        using var model = ModelFile.Open(path);
        nint start = model.BaseAddress, end = start + (nint)model.FileSize;
        foreach (var t in model.Tensors)
        {
            Assert.InRange(t.Data, start, end - (nint)t.ByteLength);
            long offset = t.Data - start;
            Assert.Equal(0, offset % ModelFormat.Alignment);
            // The pointer is the file's own bytes at that offset, not a copy that happens to be equal.
            Assert.True(fileBytes.AsSpan((int)offset, (int)t.ByteLength).SequenceEqual(new ReadOnlySpan<byte>((void*)t.Data, (int)t.ByteLength)));
        }
        Assert.Equal(tensors.Count, model.Tensors.Count);
    }

    [Fact]
    public void GetOfAMissingTensorNamesItAndFindReturnsNull()
    {
        string path = _dir.File("tiny.odlm");
        FormatTestModels.WriteValid(path);
        using var model = ModelFile.Open(path);
        Assert.Null(model.Find("blk.0.nope.weight"));
        var e = Assert.Throws<ModelFormatException>(() => model.Get("blk.0.nope.weight"));
        Assert.Contains(path, e.Message);
        Assert.Contains("blk.0.nope.weight", e.Message);
    }

    [Fact]
    public void AfterDisposeEveryMemberThrowsObjectDisposed()
    {
        string path = _dir.File("tiny.odlm");
        FormatTestModels.WriteValid(path);
        var model = ModelFile.Open(path);
        model.Dispose();
        model.Dispose();
        Assert.Throws<ObjectDisposedException>(() => model.Tensors);
        Assert.Throws<ObjectDisposedException>(() => model.Find(TensorNames.TokenEmbedding));
        Assert.Throws<ObjectDisposedException>(() => model.Get(TensorNames.TokenEmbedding));
        Assert.Throws<ObjectDisposedException>(() => model.Config);
        Assert.Throws<ObjectDisposedException>(() => model.Special);
        Assert.Throws<ObjectDisposedException>(() => model.Tokenizer);
        Assert.Throws<ObjectDisposedException>(() => model.Provenance);
        Assert.Throws<ObjectDisposedException>(() => model.FormatVersion);
        Assert.Throws<ObjectDisposedException>(() => model.BaseAddress);
    }
}

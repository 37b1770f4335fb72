using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Model;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Format;

public sealed class ModelWriterTests : IDisposable
{
    private readonly ScratchFolder _dir = new();
    public void Dispose() => _dir.Dispose();

    private ModelFormatException WriteFails(string path, ModelConfig config, List<TensorToWrite> tensors, SpecialTokens? special = null) =>
        Assert.Throws<ModelFormatException>(() => ModelWriter.Write(path, config, special ?? FormatTestModels.Special(),
            FormatTestModels.Tokenizer(), FormatTestModels.Provenance(), tensors));

    private void AssertFolderHoldsOnly(params string[] names) =>
        Assert.Equal(names.Order(), Directory.GetFiles(_dir.Root).Select(Path.GetFileName).Order());

    [Theory]
    [InlineData(-1)]
    [InlineData(+1)]
    public void ACallbackWritingTheWrongByteCountThrowsAndLeavesNoFile(int delta)
    {
        string path = _dir.File("model.odlm");
        var config = FormatTestModels.Config();
        var tensors = FormatTestModels.ToWrite(FormatTestModels.Tensors(config));
        var victim = tensors[5];
        long need = TensorTypes.ByteLength(victim.Type, victim.Shape);
        tensors[5] = victim with { WriteData = s => s.Write(new byte[need + delta]) };

        var e = WriteFails(path, config, tensors);
        Assert.Contains(path, e.Message);
        Assert.Contains($"'{victim.Name}'", e.Problem);
        Assert.Contains(need.ToString(), e.Problem);
        AssertFolderHoldsOnly();
    }

    [Fact]
    public void ByteByByteWritesAreCountedToo()
    {
        string path = _dir.File("model.odlm");
        var config = FormatTestModels.Config();
        var tensors = FormatTestModels.Tensors(config);
        var toWrite = FormatTestModels.ToWrite(tensors);
        toWrite[0] = toWrite[0] with { WriteData = s => { foreach (var b in tensors[0].Data) s.WriteByte(b); } };
        ModelWriter.Write(path, config, FormatTestModels.Special(), FormatTestModels.Tokenizer(), FormatTestModels.Provenance(), toWrite);
        using var model = ModelFile.Open(path);
        Assert.True(model.Get(tensors[0].Name).Bytes.SequenceEqual(tensors[0].Data));
    }

    [Fact]
    public void AFailureKeepsAnExistingFileUntouched()
    {
        string path = _dir.File("model.odlm");
        FormatTestModels.WriteValid(path);
        var original = File.ReadAllBytes(path);

        var config = FormatTestModels.Config();
        var tensors = FormatTestModels.ToWrite(FormatTestModels.Tensors(config, seed: 2));
        tensors[^1] = tensors[^1] with { WriteData = _ => throw new IOException("disk on fire") };
        Assert.Throws<IOException>(() => ModelWriter.Write(path, config, FormatTestModels.Special(), FormatTestModels.Tokenizer(),
            FormatTestModels.Provenance(), tensors));

        Assert.Equal(original, File.ReadAllBytes(path));
        AssertFolderHoldsOnly("model.odlm");
    }

    [Fact]
    public void AMissingTargetFolderIsReportedAsSuch()
    {
        string path = Path.Combine(_dir.Root, "no-such-folder", "model.odlm");
        var config = FormatTestModels.Config();
        Assert.Throws<DirectoryNotFoundException>(() => ModelWriter.Write(path, config, FormatTestModels.Special(),
            FormatTestModels.Tokenizer(), FormatTestModels.Provenance(), FormatTestModels.ToWrite(FormatTestModels.Tensors(config))));
    }

    [Fact]
    public void ProgressReportsEachTensorInOrder()
    {
        var config = FormatTestModels.Config();
        var tensors = FormatTestModels.Tensors(config);
        var reports = new List<(int Done, int Total, string Name)>();
        ModelWriter.Write(_dir.File("model.odlm"), config, FormatTestModels.Special(), FormatTestModels.Tokenizer(),
            FormatTestModels.Provenance(), FormatTestModels.ToWrite(tensors), new SynchronousProgress(reports.Add));
        Assert.Equal(tensors.Select((t, i) => (i + 1, tensors.Count, t.Name)), reports);
    }

    [Fact]
    public void TensorsTheArchitectureDoesNotExpectAreRefusedBeforeWriting()
    {
        string path = _dir.File("model.odlm");
        var config = FormatTestModels.Config();
        var tensors = FormatTestModels.ToWrite(FormatTestModels.Tensors(config));
        tensors.Add(new TensorToWrite("lm_head.weight", TensorType.F32, [96, 32], _ => throw new InvalidOperationException("not reached")));
        Assert.Contains("'lm_head.weight' is not part of", WriteFails(path, config, tensors).Problem);
        AssertFolderHoldsOnly();
    }

    [Fact]
    public void MissingRequiredTensorsAreRefusedBeforeWriting()
    {
        string path = _dir.File("model.odlm");
        var config = FormatTestModels.Config();
        var tensors = FormatTestModels.ToWrite(FormatTestModels.Tensors(config)).Where(t => !t.Name.EndsWith(TensorNames.AttnV)).ToList();
        Assert.Contains("(and 1 more)", WriteFails(path, config, tensors).Problem);
        AssertFolderHoldsOnly();
    }

    [Fact]
    public void ShapesTheTypeCannotHoldAreRefused()
    {
        var config = FormatTestModels.Config();
        var tensors = FormatTestModels.ToWrite(FormatTestModels.Tensors(config));
        int bias = tensors.FindIndex(t => t.Name == TensorNames.Layer(0, TensorNames.AttnQBias));
        // 48 elements per row is not a whole number of 32-element blocks.
        tensors[bias] = tensors[bias] with { Type = TensorType.Q4_0, Shape = [48] };
        var e = WriteFails(_dir.File("model.odlm"), config, tensors);
        Assert.Contains($"'{TensorNames.Layer(0, TensorNames.AttnQBias)}' of type Q4_0 cannot have shape [48]", e.Problem);
    }

    [Fact]
    public void InvalidConfigIsRefusedBeforeWriting()
    {
        var config = FormatTestModels.Config() with { HeadDim = 6, RotaryDim = 8 };
        var e = WriteFails(_dir.File("model.odlm"), config, []);
        Assert.Contains("rotary dimension 8", e.Problem);
        AssertFolderHoldsOnly();
    }

    [Fact]
    public void AddBosWithoutABosTokenIsRefused()
    {
        var config = FormatTestModels.Config();
        var e = WriteFails(_dir.File("model.odlm"), config, FormatTestModels.ToWrite(FormatTestModels.Tensors(config)),
            new SpecialTokens { AddBos = true });
        Assert.Contains("no BOS token", e.Problem);
    }

    /// <summary>Progress&lt;T&gt; posts to the thread pool; tests need the reports in hand when Write returns.</summary>
    private sealed class SynchronousProgress(Action<(int, int, string)> report) : IProgress<(int Done, int Total, string Name)>
    {
        public void Report((int Done, int Total, string Name) value) => report(value);
    }
}

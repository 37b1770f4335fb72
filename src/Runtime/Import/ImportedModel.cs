using OnDeviceLlm.Runtime.Architectures;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Import;

/// <summary>A tensor of the checkpoint being imported: its stored type, row-major shape and mapped address.</summary>
public readonly record struct SourceTensor(TensorType Type, long[] Shape, nint Data);

/// <summary>The tensors of a checkpoint being imported, by their names in that checkpoint (a safetensors folder, a GGUF file).</summary>
public interface ISourceTensors : IDisposable
{
    SourceTensor Get(string name);
}

/// <summary>One canonical tensor of an import: where its rows come from in the checkpoint, and its final shape.</summary>
public sealed record ImportedTensor(string Name, long[] Shape, TensorType SourceType, IReadOnlyList<RowSlice> Pieces);

/// <summary>A checkpoint read and mapped onto the canonical model, ready to be written as a model file.</summary>
public sealed class ImportedModel : IDisposable
{
    internal ImportedModel(string source, ModelConfig config, SpecialTokens special, TokenizerFiles tokenizer,
                           IReadOnlyList<ImportedTensor> tensors, ISourceTensors weights)
    {
        Source = source; Config = config; Special = special; Tokenizer = tokenizer; Tensors = tensors; Weights = weights;
    }

    public string Source { get; }
    public ModelConfig Config { get; }
    public SpecialTokens Special { get; }
    public TokenizerFiles Tokenizer { get; }
    public IReadOnlyList<ImportedTensor> Tensors { get; }
    public ISourceTensors Weights { get; }

    public void Dispose() => Weights.Dispose();
}

using OnDeviceLlm.Runtime.Format;

namespace OnDeviceLlm.Runtime.Model;

/// <summary>
/// An open model whose tensors the forward pass reads in place: an .odlm file (<see cref="ModelFile"/>) or a GGUF file
/// (<see cref="Import.Gguf.GgufModel"/>). Tensors stay valid until <see cref="IDisposable.Dispose"/>.
/// </summary>
public interface IModelSource : ITensorSource, IDisposable
{
    string Path { get; }
    long FileSize { get; }
    /// <summary>"odlm" or "gguf".</summary>
    string Format { get; }
    /// <summary>The container's own version: the .odlm format version, or the GGUF version.</summary>
    int FormatVersion { get; }
    ModelConfig Config { get; }
    SpecialTokens Special { get; }
    TokenizerFiles Tokenizer { get; }
    Provenance Provenance { get; }
}

using System.Runtime.InteropServices;
using OnDeviceLlm.Runtime.Architectures;
using OnDeviceLlm.Runtime.Conversion;
using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Import.Gguf;

/// <summary>
/// A GGUF file opened for inference as it is: every tensor of a type the kernels compute with (F32, F16, BF16, Q8_0,
/// Q4_0) points into the file's mapping, as in an .odlm file, so opening reads no weights and the pages are shared with
/// the OS cache. Only what llama.cpp stores differently from the forward pass is copied once, into native memory:
/// Llama's Q/K rows (permuted for llama.cpp's interleaved RoPE) and tensors of types the kernels lack (k-quants, Q4_1,
/// Q5_0, Q5_1, re-encoded as Q8_0). <see cref="CopiedTensors"/> names them.
/// </summary>
public sealed unsafe class GgufModel : IModelSource
{
    private readonly ImportedModel _import;
    private readonly ModelTensor[] _tensors;
    private readonly Dictionary<string, ModelTensor> _byName;
    private readonly List<nint> _copies = [];
    private readonly nint _mapStart;
    private readonly long _mapLength;
    private bool _disposed;

    private GgufModel(GgufFile file, ImportedModel import)
    {
        _import = import;
        Path = file.Path;
        FileSize = file.Length;
        FormatVersion = (int)file.Version;
        Provenance = new Provenance(import.Source, ModelConverter.ConverterVersion, Quantization.QuantizationScheme.Source.Name);
        ModelValidator.Config(Path, import.Config);
        ModelValidator.Special(Path, import.Special, import.Config);
        ModelValidator.Tokenizer(Path, import.Tokenizer);
        _mapStart = file.DataStart;
        _mapLength = file.Length - file.DataOffset;
        var copied = new List<string>();
        try
        {
            _tensors = new ModelTensor[import.Tensors.Count];
            for (int i = 0; i < _tensors.Length; i++)
            {
                _tensors[i] = Place(file, import.Tensors[i], out bool copy);
                if (copy) copied.Add(_tensors[i].Name);
            }
        }
        catch
        {
            FreeCopies();
            throw;
        }
        CopiedTensors = copied;
        _byName = _tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>Maps a GGUF model file and validates it as the converter would.</summary>
    /// <exception cref="ModelFormatException">The file is not a valid GGUF model; the message says how.</exception>
    /// <exception cref="UnsupportedModelException">An architecture, option or tensor type this runtime does not run.</exception>
    public static GgufModel Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var file = GgufFile.Open(path);
        var import = GgufImporter.Import(file);
        try
        {
            return new GgufModel(file, import);
        }
        catch
        {
            import.Dispose();
            throw;
        }
    }

    public string Path { get; }
    public long FileSize { get; }
    public string Format => "gguf";
    public int FormatVersion { get; }
    public ModelConfig Config => _import.Config;
    public SpecialTokens Special => _import.Special;
    public TokenizerFiles Tokenizer => _import.Tokenizer;
    public Provenance Provenance { get; }
    public IReadOnlyList<ModelTensor> Tensors { get { ObjectDisposedException.ThrowIf(_disposed, this); return _tensors; } }
    /// <summary>The tensors held in a private copy rather than in the mapping (see the class summary).</summary>
    public IReadOnlyList<string> CopiedTensors { get; }

    public ModelTensor? Find(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _byName.GetValueOrDefault(name);
    }

    /// <summary>Whether a tensor's bytes lie inside the file's mapping (tests use it to prove tensors are not copies).</summary>
    internal bool IsMapped(ModelTensor tensor) =>
        tensor.Data >= _mapStart && tensor.Data + (nint)tensor.ByteLength <= _mapStart + (nint)_mapLength;

    /// <summary>
    /// A view into the mapping when the tensor is one run of rows of a stored tensor of its own type (a whole tensor,
    /// or q, k or v of a fused attn_qkv); otherwise its pieces gathered into a copy.
    /// </summary>
    private ModelTensor Place(GgufFile file, ImportedTensor t, out bool copy)
    {
        long byteLength = TensorTypes.ByteLength(t.SourceType, t.Shape);
        copy = !(t.Pieces.Count == 1 && GgmlTypes.ToTensorType(file.Find(t.Pieces[0].Source)!.Type) == t.SourceType);
        if (!copy)
        {
            var (start, length) = Bytes(_import.Weights.Get(t.Pieces[0].Source), t.Pieces[0]);
            return new ModelTensor(t.Name, t.SourceType, t.Shape, start, length);
        }
        byte* target = (byte*)NativeMemory.AlignedAlloc((nuint)byteLength, 64);
        _copies.Add((nint)target);
        long written = 0;
        foreach (var piece in t.Pieces)
        {
            var (start, length) = Bytes(_import.Weights.Get(piece.Source), piece);
            if (written + length > byteLength)
                throw new ModelFormatException(Path, $"the pieces of tensor {t.Name} hold more than its {byteLength} bytes.");
            Buffer.MemoryCopy((void*)start, target + written, byteLength - written, length);
            written += length;
        }
        if (written != byteLength)
            throw new ModelFormatException(Path, $"the pieces of tensor {t.Name} hold {written} bytes, not its {byteLength}.");
        return new ModelTensor(t.Name, t.SourceType, t.Shape, (nint)target, byteLength);
    }

    /// <summary>Where a run of rows of a stored tensor lies (rows of the first dimension; all of them for Count &lt; 0).</summary>
    private static (nint Start, long Length) Bytes(SourceTensor source, RowSlice piece)
    {
        long rowValues = 1;
        for (int d = 1; d < source.Shape.Length; d++) rowValues *= source.Shape[d];
        long rows = piece.Count < 0 ? source.Shape[0] : piece.Count;
        long skip = TensorTypes.ByteLength(source.Type, [piece.Start * rowValues]);
        return (source.Data + (nint)skip, TensorTypes.ByteLength(source.Type, [rows * rowValues]));
    }

    private void FreeCopies()
    {
        foreach (var p in _copies) NativeMemory.AlignedFree((void*)p);
        _copies.Clear();
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        FreeCopies();
        _import.Dispose();
    }

    public override string ToString() => $"{Path} (GGUF, {Config.Architecture}, {_tensors.Length} tensors)";
}

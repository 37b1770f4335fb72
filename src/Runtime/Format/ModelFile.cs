using System.Buffers.Binary;
using System.Text;
using Google.FlatBuffers;
using OnDeviceLlm.Runtime.Model;
using Fb = OnDeviceLlm.Runtime.Format.Fbs;

namespace OnDeviceLlm.Runtime.Format;

/// <summary>
/// An open .odlm file. The whole file is memory-mapped read-only; only the header is copied out, and every
/// <see cref="ModelTensor.Data"/> points into the mapping, so opening costs no weight reads and the pages come
/// from the OS page cache on first use. Tensors stay valid until <see cref="Dispose"/>.
/// </summary>
public sealed unsafe class ModelFile : IModelSource
{
    private readonly MappedFile _file;
    private readonly byte* _base;
    private readonly Header _header;
    private readonly ModelTensor[] _tensors;
    private readonly Dictionary<string, ModelTensor> _byName;
    private bool _disposed;

    private ModelFile(MappedFile file, Header header, ModelTensor[] tensors)
    {
        Path = file.Path; FileSize = file.Length; _file = file; _base = file.Base; _header = header; _tensors = tensors;
        _byName = new Dictionary<string, ModelTensor>(tensors.Length, StringComparer.Ordinal);
        foreach (var t in tensors) _byName.Add(t.Name, t);
    }

    public string Path { get; }
    public long FileSize { get; }
    public string Format => "odlm";
    public int FormatVersion { get { ThrowIfDisposed(); return (int)_header.FormatVersion; } }
    public ModelConfig Config { get { ThrowIfDisposed(); return _header.Config; } }
    public SpecialTokens Special { get { ThrowIfDisposed(); return _header.Special; } }
    public TokenizerFiles Tokenizer { get { ThrowIfDisposed(); return _header.Tokenizer; } }
    public Provenance Provenance { get { ThrowIfDisposed(); return _header.Provenance; } }
    /// <summary>In file order.</summary>
    public IReadOnlyList<ModelTensor> Tensors { get { ThrowIfDisposed(); return _tensors; } }

    /// <summary>Start of the mapping (tests use it to prove tensors are not copies).</summary>
    internal nint BaseAddress { get { ThrowIfDisposed(); return (nint)_base; } }

    public ModelTensor? Find(string name)
    {
        ThrowIfDisposed();
        return _byName.GetValueOrDefault(name);
    }

    /// <exception cref="ModelFormatException">The file holds no tensor of that name.</exception>
    public ModelTensor Get(string name) =>
        Find(name) ?? throw new ModelFormatException(Path, $"the model has no tensor named '{name}'.");

    /// <summary>Maps and validates a model file.</summary>
    /// <exception cref="ModelFormatException">The file cannot be opened, is not an .odlm file, or is inconsistent; the message says how.</exception>
    public static ModelFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var file = MappedFile.Open(path, ModelFormat.MinimumHeaderBytes, size => size == 0
            ? "the file is empty."
            : $"the file is only {size} bytes long, shorter than a model header.");
        try
        {
            var header = ReadHeader(path, file.Base, file.Length, out long headerEnd);
            var tensors = Validate(path, header, file.Base, headerEnd, file.Length);
            return new ModelFile(file, header, tensors);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static Header ReadHeader(string path, byte* @base, long fileSize, out long headerEnd)
    {
        var identifier = new ReadOnlySpan<byte>(@base + ModelFormat.IdentifierOffset, 4);
        if (!identifier.SequenceEqual("ODLM"u8))
            throw new ModelFormatException(path, $"this is not an .odlm model file (expected the identifier '{ModelFormat.Identifier}' at byte {ModelFormat.IdentifierOffset}, found {Printable(identifier)}).");

        uint declared = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(@base, 4));
        headerEnd = 4L + declared;
        if (declared < ModelFormat.MinimumHeaderBytes - 4 || headerEnd > int.MaxValue)
            throw new ModelFormatException(path, $"the header declares {declared} bytes, which no valid header has; the file is corrupt.");
        if (headerEnd > fileSize)
            throw new ModelFormatException(path, $"the file is truncated: its header declares {declared} bytes but only {fileSize - 4} follow.");

        // Google.FlatBuffers reads only from managed arrays, so the header (never the weights) is copied once.
        var bytes = new ReadOnlySpan<byte>(@base, (int)headerEnd).ToArray();
        // Google.FlatBuffers 25.2.10's generated Verifier rejects every valid buffer with a table past 32 KiB
        // (google/flatbuffers#8937), which any real tokenizer exceeds. Its ByteBuffer bounds-checks every read, so a
        // corrupt header surfaces as an out-of-range exception while reading, and Header.Read bounds every allocation.
        var buffer = new ByteBuffer(bytes) { Position = 4 };
        try
        {
            var model = Fb.Model.GetRootAsModel(buffer);
            if (model.FormatVersion != ModelFormat.Version)
                throw new ModelFormatException(path, $"the file has format version {model.FormatVersion}, but this runtime reads version {ModelFormat.Version}.");
            return Header.Read(path, model, bytes.Length);
        }
        catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or OverflowException or InvalidOperationException)
        {
            throw new ModelFormatException(path, "the header is not a valid FlatBuffer; the file is corrupt.", e);
        }
    }

    private static ModelTensor[] Validate(string path, Header header, byte* @base, long headerEnd, long fileSize)
    {
        ModelValidator.Config(path, header.Config);
        ModelValidator.Special(path, header.Special, header.Config);
        ModelValidator.Tokenizer(path, header.Tokenizer);

        var tensors = new ModelTensor[header.Tensors.Count];
        for (int i = 0; i < tensors.Length; i++)
        {
            var t = header.Tensors[i];
            long length = ModelValidator.Tensor(path, t.Name, t.Type, t.Shape, t.BlockSize);
            if (t.ByteLength != (ulong)length)
                throw new ModelFormatException(path, $"tensor '{t.Name}' records {t.ByteLength} bytes but {t.Type} {ModelValidator.Format(t.Shape)} takes {length}.");
        }
        ModelValidator.Placement(path, header.Tensors, headerEnd, fileSize);
        ModelValidator.TensorSet(path, header.Config, header.Tensors.Select(t => (t.Name, t.Shape)));

        for (int i = 0; i < tensors.Length; i++)
        {
            var t = header.Tensors[i];
            tensors[i] = new ModelTensor(t.Name, t.Type, t.Shape, (nint)(@base + (long)t.Offset), (long)t.ByteLength);
        }
        return tensors;
    }

    private static string Printable(ReadOnlySpan<byte> bytes)
    {
        foreach (var b in bytes)
            if (b < 0x20 || b > 0x7E) return "bytes " + Convert.ToHexString(bytes);
        return $"'{Encoding.ASCII.GetString(bytes)}'";
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _file.Dispose();
    }

    public override string ToString() => $"{Path} ({_header.Config.Architecture}, {_tensors.Length} tensors)";
}

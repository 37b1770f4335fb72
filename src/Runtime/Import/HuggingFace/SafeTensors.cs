using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Import.HuggingFace;

/// <summary>
/// The safetensors weights of a Hugging Face folder: a single <c>model.safetensors</c>, or the
/// shards named by <c>model.safetensors.index.json</c>. Every file is memory-mapped read-only and
/// tensors are views into the mapping, valid until <see cref="Dispose"/>.
/// </summary>
public sealed class SafeTensorsCheckpoint : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly string _folder;
    private readonly SafeTensorsFile[] _files;
    private readonly Dictionary<string, SafeTensor> _tensors;

    private SafeTensorsCheckpoint(string folder, SafeTensorsFile[] files, Dictionary<string, SafeTensor> tensors)
    {
        _folder = folder;
        _files = files;
        _tensors = tensors;
    }

    /// <summary>Opens the weights in <paramref name="folder"/>; like transformers, a single file wins over an index.</summary>
    public static SafeTensorsCheckpoint Open(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        if (!Directory.Exists(folder))
            throw new ModelFormatException(folder, "the checkpoint folder does not exist.");

        string single = Path.Combine(folder, SingleFileName);
        if (File.Exists(single))
        {
            var file = SafeTensorsFile.Open(single);
            return new SafeTensorsCheckpoint(folder, [file], new Dictionary<string, SafeTensor>(file.Tensors, StringComparer.Ordinal));
        }

        string index = Path.Combine(folder, IndexFileName);
        if (File.Exists(index)) return OpenSharded(folder, index);

        throw new ModelFormatException(folder, $"the folder has neither {SingleFileName} nor {IndexFileName}.");
    }

    public IReadOnlyCollection<string> Names => _tensors.Keys;

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public SafeTensor Get(string name)
    {
        ObjectDisposedException.ThrowIf(_files.Length > 0 && _files[0].IsDisposed, this);
        if (_tensors.TryGetValue(name, out var tensor)) return tensor;
        throw new ModelFormatException(_folder, $"the checkpoint has no tensor named '{name}'.");
    }

    public void Dispose()
    {
        foreach (var file in _files) file.Dispose();
    }

    private static SafeTensorsCheckpoint OpenSharded(string folder, string indexPath)
    {
        var weightMap = ReadWeightMap(indexPath);
        string fullFolder = Path.GetFullPath(folder);
        var files = new List<SafeTensorsFile>();
        try
        {
            var byShard = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
            var tensors = new Dictionary<string, SafeTensor>(StringComparer.Ordinal);
            foreach (var (name, shard) in weightMap)
            {
                if (!byShard.TryGetValue(shard, out var file))
                {
                    string shardPath = Path.GetFullPath(Path.Combine(fullFolder, shard));
                    // A shard is a file of this folder; refusing anything else keeps a hostile
                    // index from mapping arbitrary files.
                    if (Path.IsPathRooted(shard) || !shardPath.StartsWith(fullFolder + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                        throw new ModelFormatException(indexPath, $"shard '{shard}' (for tensor '{name}') is not a file inside the checkpoint folder.");
                    if (!File.Exists(shardPath))
                        throw new ModelFormatException(indexPath, $"shard '{shard}' named in weight_map (for tensor '{name}') does not exist.");
                    file = SafeTensorsFile.Open(shardPath);
                    files.Add(file);
                    byShard.Add(shard, file);
                }
                if (!file.Tensors.TryGetValue(name, out var tensor))
                    throw new ModelFormatException(file.Path, $"tensor '{name}', which {IndexFileName} places in this shard, is not in it.");
                tensors.Add(name, tensor);
            }
            return new SafeTensorsCheckpoint(folder, [.. files], tensors);
        }
        catch
        {
            foreach (var file in files) file.Dispose();
            throw;
        }
    }

    private static List<KeyValuePair<string, string>> ReadWeightMap(string indexPath)
    {
        byte[] json;
        try { json = File.ReadAllBytes(indexPath); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(indexPath, $"the index cannot be read ({e.Message}).", e);
        }

        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(indexPath, "the index is not a JSON object.");
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(indexPath, "the index has no \"weight_map\" object.");
            var result = new List<KeyValuePair<string, string>>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                    throw new ModelFormatException(indexPath, $"weight_map entry '{entry.Name}' is not a shard file name.");
                if (!seen.Add(entry.Name))
                    throw new ModelFormatException(indexPath, $"weight_map lists tensor '{entry.Name}' twice.");
                result.Add(new(entry.Name, entry.Value.GetString()!));
            }
            if (result.Count == 0)
                throw new ModelFormatException(indexPath, "weight_map is empty.");
            return result;
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(indexPath, $"the index is not valid JSON ({e.Message}).", e);
        }
    }
}

/// <summary>One tensor of a safetensors file: a view into the memory mapping, never a copy.</summary>
public sealed unsafe class SafeTensor
{
    private readonly SafeTensorsFile _file;
    private readonly byte* _data;

    internal SafeTensor(SafeTensorsFile file, string name, string dtype, long[] shape, byte* data, long byteLength)
    {
        _file = file;
        Name = name;
        DType = dtype;
        Shape = shape;
        _data = data;
        ByteLength = byteLength;
    }

    public string Name { get; }

    /// <summary>The safetensors dtype string as written in the file ("F32", "BF16", "I8", ...).</summary>
    public string DType { get; }

    public long[] Shape { get; }

    public long ByteLength { get; }

    /// <summary>Address of the first byte inside the mapping; valid until the checkpoint is disposed.</summary>
    public nint Data
    {
        get
        {
            ObjectDisposedException.ThrowIf(_file.IsDisposed, this);
            return (nint)_data;
        }
    }

    public ReadOnlySpan<byte> Bytes
    {
        get
        {
            ObjectDisposedException.ThrowIf(_file.IsDisposed, this);
            if (ByteLength > int.MaxValue)
                throw new InvalidOperationException($"Tensor '{Name}' is {ByteLength} bytes, more than a span can address; read it through Data and ByteLength or by rows.");
            return new ReadOnlySpan<byte>(_data, (int)ByteLength);
        }
    }

    /// <summary>The runtime's tensor type; only F32, F16 and BF16 are imported.</summary>
    public TensorType Type => DType switch
    {
        "F32" => TensorType.F32,
        "F16" => TensorType.F16,
        "BF16" => TensorType.BF16,
        _ => throw new UnsupportedModelException(
            $"Tensor '{Name}' in {_file.Path} has dtype {DType}; only F32, F16 and BF16 safetensors weights are supported."),
    };

    public long ElementCount
    {
        get { long n = 1; foreach (long d in Shape) n *= d; return n; }
    }

    /// <summary>Length of the last dimension (1 for a scalar).</summary>
    public long Cols => Shape.Length == 0 ? 1 : Shape[^1];

    /// <summary>Product of all dimensions but the last (1 for a vector or scalar).</summary>
    public long Rows => Cols == 0 ? 0 : ElementCount / Cols;

    /// <summary>Decodes rows [firstRow, firstRow + rowCount) to f32 into the start of <paramref name="dst"/>.</summary>
    public void CopyRowsAsFloat32(int firstRow, int rowCount, Span<float> dst)
    {
        var type = Type;
        ObjectDisposedException.ThrowIf(_file.IsDisposed, this);
        long rows = Rows, cols = Cols;
        if (firstRow < 0 || rowCount < 0 || firstRow + (long)rowCount > rows)
            throw new ArgumentOutOfRangeException(nameof(firstRow),
                $"Rows [{firstRow}, {firstRow + (long)rowCount}) are outside tensor '{Name}', which has {rows} rows.");
        long elements = rowCount * cols;
        if (dst.Length < elements)
            throw new ArgumentException($"The destination holds {dst.Length} floats; {elements} are needed for {rowCount} rows of '{Name}'.", nameof(dst));

        int elementSize = type == TensorType.F32 ? 4 : 2;
        var src = new ReadOnlySpan<byte>(_data + firstRow * cols * elementSize, checked((int)(elements * elementSize)));
        var output = dst[..(int)elements];
        switch (type)
        {
            case TensorType.F32:
                MemoryMarshal.Cast<byte, float>(src).CopyTo(output);
                break;
            case TensorType.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(src), output);
                break;
            default:
                var bits = MemoryMarshal.Cast<byte, ushort>(src);
                for (int i = 0; i < bits.Length; i++) output[i] = Dequantize.BFloat16ToSingle(bits[i]);
                break;
        }
    }

    public override string ToString() => $"{Name} {DType} [{string.Join(", ", Shape)}]";
}

/// <summary>One mapped .safetensors file: 8-byte little-endian header length, JSON header, data section.</summary>
internal sealed unsafe class SafeTensorsFile : IDisposable
{
    // The limit the reference implementation (huggingface/safetensors) enforces.
    private const long MaxHeaderBytes = 100_000_000;

    private readonly MappedFile _mapped;

    public string Path { get; }
    public IReadOnlyDictionary<string, SafeTensor> Tensors { get; private set; } = new Dictionary<string, SafeTensor>();
    public bool IsDisposed { get; private set; }

    private SafeTensorsFile(MappedFile mapped)
    {
        Path = mapped.Path;
        _mapped = mapped;
    }

    public static SafeTensorsFile Open(string path)
    {
        var mapped = MappedFile.Open(path, 8, length => $"the file is {length} bytes long, too short for the 8-byte safetensors header length.");
        var file = new SafeTensorsFile(mapped);
        try
        {
            file.Tensors = ParseHeader(file, mapped.Base, mapped.Length);
            return file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static Dictionary<string, SafeTensor> ParseHeader(SafeTensorsFile file, byte* basePtr, long fileLength)
    {
        string path = file.Path;
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(basePtr, 8));
        if (headerLength > MaxHeaderBytes)
            throw new ModelFormatException(path, $"the header length {headerLength} is over the 100 MB limit; this is not a safetensors file or it is corrupt.");
        if ((long)headerLength > fileLength - 8)
            throw new ModelFormatException(path, $"the header length {headerLength} runs past the end of the {fileLength}-byte file.");

        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;
        // The header is parsed from a copy (it is small); the tensor data is never copied.
        byte[] header = new ReadOnlySpan<byte>(basePtr + 8, (int)headerLength).ToArray();

        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"the header is not valid JSON ({e.Message}).", e);
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(path, $"the header is a JSON {doc.RootElement.ValueKind}, not an object.");

            var entries = new List<Entry>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                if (!names.Add(property.Name))
                    throw new ModelFormatException(path, $"the header lists '{property.Name}' twice.");
                if (property.Name == "__metadata__")
                    CheckMetadata(path, property.Value);
                else
                    entries.Add(ParseEntry(path, property.Name, property.Value, dataLength));
            }

            // Sorted by start, each tensor must begin at or after the end of the one before it.
            entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
            for (int i = 1; i < entries.Count; i++)
            {
                if (entries[i].Begin < entries[i - 1].End)
                    throw new ModelFormatException(path,
                        $"tensors '{entries[i - 1].Name}' [{entries[i - 1].Begin}, {entries[i - 1].End}) and '{entries[i].Name}' [{entries[i].Begin}, {entries[i].End}) overlap.");
            }

            var tensors = new Dictionary<string, SafeTensor>(entries.Count, StringComparer.Ordinal);
            foreach (var e in entries)
                tensors.Add(e.Name, new SafeTensor(file, e.Name, e.DType, e.Shape, basePtr + dataStart + e.Begin, e.End - e.Begin));
            return tensors;
        }
    }

    private readonly record struct Entry(string Name, string DType, long[] Shape, long Begin, long End);

    private static Entry ParseEntry(string path, string name, JsonElement value, long dataLength)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, $"the header entry of tensor '{name}' is not an object.");

        string? dtype = null;
        long[]? shape = null;
        long[]? offsets = null;
        foreach (var field in value.EnumerateObject())
        {
            switch (field.Name)
            {
                case "dtype":
                    if (field.Value.ValueKind != JsonValueKind.String)
                        throw new ModelFormatException(path, $"tensor '{name}' has a dtype that is not a string.");
                    dtype = field.Value.GetString()!;
                    break;
                case "shape":
                    shape = ReadNonNegativeIntegers(path, name, "shape", field.Value);
                    break;
                case "data_offsets":
                    offsets = ReadNonNegativeIntegers(path, name, "data_offsets", field.Value);
                    if (offsets.Length != 2)
                        throw new ModelFormatException(path, $"tensor '{name}' has {offsets.Length} data_offsets instead of [begin, end].");
                    break;
                default:
                    throw new ModelFormatException(path, $"tensor '{name}' has an unknown field '{field.Name}'.");
            }
        }
        if (dtype is null) throw new ModelFormatException(path, $"tensor '{name}' has no dtype.");
        if (shape is null) throw new ModelFormatException(path, $"tensor '{name}' has no shape.");
        if (offsets is null) throw new ModelFormatException(path, $"tensor '{name}' has no data_offsets.");

        long begin = offsets[0], end = offsets[1];
        if (end < begin)
            throw new ModelFormatException(path, $"tensor '{name}' has data_offsets [{begin}, {end}) that end before they begin.");
        if (end > dataLength)
            throw new ModelFormatException(path, $"tensor '{name}' has data_offsets [{begin}, {end}) past the end of the {dataLength}-byte data section.");

        // A dtype newer than this list cannot be size-checked, but the tensor is still listed so
        // that a checkpoint with one exotic tensor the model never reads still opens; reading its
        // Type reports it.
        int bits = BitsPerElement(dtype);
        if (bits > 0)
        {
            long count = 1;
            try
            {
                foreach (long d in shape) count = checked(count * d);
                long totalBits = checked(count * bits);
                if (totalBits % 8 != 0)
                    throw new ModelFormatException(path, $"tensor '{name}' of dtype {dtype} and shape [{string.Join(", ", shape)}] does not fill a whole number of bytes.");
                if (totalBits / 8 != end - begin)
                    throw new ModelFormatException(path,
                        $"tensor '{name}' of dtype {dtype} and shape [{string.Join(", ", shape)}] needs {totalBits / 8} bytes, but its data_offsets span {end - begin}.");
            }
            catch (OverflowException)
            {
                throw new ModelFormatException(path, $"tensor '{name}' has a shape [{string.Join(", ", shape)}] too large to address.");
            }
        }
        return new Entry(name, dtype, shape, begin, end);
    }

    private static long[] ReadNonNegativeIntegers(string path, string name, string field, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException(path, $"tensor '{name}' has a {field} that is not an array.");
        var result = new long[value.GetArrayLength()];
        int i = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long n) || n < 0)
                throw new ModelFormatException(path, $"tensor '{name}' has a {field} entry {item.GetRawText()} that is not a non-negative integer.");
            result[i++] = n;
        }
        return result;
    }

    private static void CheckMetadata(string path, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, "__metadata__ is not an object.");
        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
                throw new ModelFormatException(path, $"__metadata__ entry '{item.Name}' is not a string.");
        }
    }

    /// <summary>Element sizes of the dtypes the safetensors format defines; 0 for anything else.</summary>
    private static int BitsPerElement(string dtype) => dtype switch
    {
        "BOOL" or "U8" or "I8" or "F8_E5M2" or "F8_E4M3" or "F8_E8M0" => 8,
        "I16" or "U16" or "F16" or "BF16" => 16,
        "I32" or "U32" or "F32" => 32,
        "I64" or "U64" or "F64" or "C64" => 64,
        "F4" => 4,
        "F6_E2M3" or "F6_E3M2" => 6,
        _ => 0,
    };

    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        _mapped.Dispose();
    }
}

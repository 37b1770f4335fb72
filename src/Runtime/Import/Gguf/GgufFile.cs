using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Import.Gguf;

/// <summary>One tensor as the GGUF header describes it. <see cref="Dims"/> are ggml's order: Dims[0] is the contiguous one.</summary>
public sealed record GgufTensorInfo(string Name, GgmlType Type, long[] Dims, long Offset, long ByteLength)
{
    /// <summary>Row-major shape, outermost first, as the rest of the runtime writes it ([out, in] for a matrix).</summary>
    public long[] Shape => Dims.Reverse().ToArray();
}

/// <summary>
/// A GGUF file (versions 2 and 3, little-endian): metadata, tensor infos, and the tensor data memory-mapped in place.
/// Every count, length and offset in the header is checked against the file size before anything is allocated,
/// so a malformed file raises <see cref="ModelFormatException"/> and never a crash or a huge allocation.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" read as a little-endian uint32
    public const int DefaultAlignment = 32;

    private readonly MappedFile _file;
    private readonly byte* _base;
    private readonly Dictionary<string, GgufTensorInfo> _byName;
    private bool _disposed;

    private GgufFile(MappedFile file, Header header)
    {
        Path = file.Path;
        Length = file.Length;
        _file = file;
        _base = file.Base;
        Version = header.Version;
        Metadata = header.Metadata;
        Tensors = header.Tensors;
        Alignment = header.Alignment;
        DataOffset = header.DataOffset;
        _byName = header.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    public string Path { get; }
    /// <summary>Bytes in the file.</summary>
    public long Length { get; }
    public uint Version { get; }
    public GgufMetadata Metadata { get; }
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }
    public int Alignment { get; }
    /// <summary>File offset of the tensor data section; tensor offsets are relative to it.</summary>
    public long DataOffset { get; }

    /// <summary>general.architecture, the key every llama.cpp GGUF carries.</summary>
    public string Architecture => Metadata.RequireString("general.architecture");

    /// <summary>A .gguf file, or any file that starts with the GGUF magic (downloads are not always named .gguf).</summary>
    public static bool IsGguf(string path)
    {
        if (path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)) return true;
        if (!File.Exists(path)) return false;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            Span<byte> magic = stackalloc byte[4];
            return stream.ReadAtLeast(magic, 4, throwOnEndOfStream: false) == 4 && BinaryPrimitives.ReadUInt32LittleEndian(magic) == Magic;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Maps a GGUF file and validates its header.</summary>
    public static GgufFile Open(string path)
    {
        var file = MappedFile.Open(path, 24, length => $"the file is {length} bytes long, too short for a GGUF header (24 bytes).");
        try
        {
            return new GgufFile(file, Parse(path, file.Base, file.Length));
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Parses the header of GGUF bytes held in memory (a vocab-only GGUF embedded in a model file); it has no tensor data to map.</summary>
    public static (GgufMetadata Metadata, IReadOnlyList<GgufTensorInfo> Tensors) ParseHeader(string name, ReadOnlySpan<byte> bytes)
    {
        fixed (byte* p = bytes)
        {
            var header = Parse(name, p, bytes.Length);
            return (header.Metadata, header.Tensors);
        }
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public GgufTensorInfo? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>A view of the tensor's bytes; its type must be one the runtime reads (F32, F16, BF16, Q8_0, Q4_0).</summary>
    public ModelTensor GetTensor(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var info = Find(name) ?? throw new ModelFormatException(Path, $"the file has no tensor named '{name}'.");
        var type = GgmlTypes.ToTensorType(info.Type)
            ?? throw new UnsupportedModelException($"{Path}: tensor {info.Name} is stored as {info.Type}, which this runtime cannot read yet (supported: F32, F16, BF16, Q8_0, Q4_0); use a GGUF quantized to Q8_0 or Q4_0, or convert the original checkpoint.");
        return new ModelTensor(info.Name, type, info.Shape, (nint)(_base + DataOffset + info.Offset), info.ByteLength);
    }

    /// <summary>Address of the tensor data section in the mapping; valid until Dispose.</summary>
    internal nint DataStart
    {
        get { ObjectDisposedException.ThrowIf(_disposed, this); return (nint)(_base + DataOffset); }
    }

    /// <summary>Address of a tensor's first byte in the mapping, whatever its type; valid until Dispose.</summary>
    public nint Address(GgufTensorInfo info)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Find(info.Name) != info) throw new ArgumentException($"Tensor {info.Name} is not one of this file's tensor infos.", nameof(info));
        return (nint)(_base + DataOffset + info.Offset);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _file.Dispose();
    }

    // ---- parsing ----

    private sealed record Header(uint Version, GgufMetadata Metadata, IReadOnlyList<GgufTensorInfo> Tensors, int Alignment, long DataOffset);

    /// <summary>Longest string accepted (a chat template or a token is far shorter; the bound keeps a corrupt length cheap).</summary>
    private const long MaxStringBytes = 64L << 20;
    private const int MaxNameBytes = 1024;
    private const int MaxDims = 4;
    private const int MaxArrayDepth = 2;

    private static Header Parse(string path, byte* data, long length)
    {
        var r = new Cursor(path, data, length);
        uint magic = r.U32("the magic number");
        if (magic != Magic)
            throw new ModelFormatException(path, $"not a GGUF file (the first four bytes are {magic & 0xFF:X2} {(magic >> 8) & 0xFF:X2} {(magic >> 16) & 0xFF:X2} {magic >> 24:X2}, not \"GGUF\").");
        uint version = r.U32("the version");
        if (version == 1)
            throw new UnsupportedModelException($"{path}: GGUF version 1 is not supported (only 2 and 3); re-convert it with a current llama.cpp.");
        if (version is not (2 or 3))
            throw new ModelFormatException(path, BinaryPrimitives.ReverseEndianness(version) is 2 or 3
                ? "the file is a big-endian GGUF, which is not supported."
                : $"GGUF version {version} is not supported (only 2 and 3).");

        ulong tensorCount = r.U64("the tensor count");
        ulong kvCount = r.U64("the metadata count");
        // Each key/value takes at least 13 bytes (key length, type, one byte of value), each tensor info at least 32.
        if (kvCount > (ulong)(r.Remaining / 13))
            throw new ModelFormatException(path, $"the header claims {kvCount} metadata entries, more than a file of {length} bytes can hold.");
        if (tensorCount > (ulong)(r.Remaining / 32))
            throw new ModelFormatException(path, $"the header claims {tensorCount} tensors, more than a file of {length} bytes can hold.");

        var values = new Dictionary<string, GgufValue>((int)kvCount, StringComparer.Ordinal);
        for (ulong i = 0; i < kvCount; i++)
        {
            string key = r.String($"the key of metadata entry {i}", MaxNameBytes);
            var type = (GgufValueType)r.U32($"the type of metadata {key}");
            var value = r.Value(key, type, 0);
            if (!values.TryAdd(key, value)) throw new ModelFormatException(path, $"metadata key {key} appears twice.");
        }
        var metadata = new GgufMetadata(path, values);

        int alignment = DefaultAlignment;
        if (metadata.Contains("general.alignment"))
        {
            long a = metadata.Integer("general.alignment")!.Value;
            if (a <= 0 || a > 1 << 20 || (a & (a - 1)) != 0)
                throw new ModelFormatException(path, $"general.alignment = {a} is not a power of two up to 1 MiB.");
            alignment = (int)a;
        }

        var infos = new List<GgufTensorInfo>((int)tensorCount);
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (ulong i = 0; i < tensorCount; i++)
        {
            string name = r.String($"the name of tensor {i}", MaxNameBytes);
            if (!names.Add(name)) throw new ModelFormatException(path, $"tensor {name} appears twice.");
            uint nDims = r.U32($"the dimension count of tensor {name}");
            if (nDims is 0 or > MaxDims) throw new ModelFormatException(path, $"tensor {name} has {nDims} dimensions (1 to {MaxDims} allowed).");
            var dims = new long[nDims];
            long elements = 1;
            for (int d = 0; d < nDims; d++)
            {
                ulong n = r.U64($"a dimension of tensor {name}");
                if (n == 0 || n > int.MaxValue) throw new ModelFormatException(path, $"tensor {name} has dimension {d} = {n}, outside 1 to {int.MaxValue}.");
                dims[d] = (long)n;
                if (elements > long.MaxValue / (long)n) throw new ModelFormatException(path, $"tensor {name} has more elements than can be addressed.");
                elements *= (long)n;
            }
            uint typeId = r.U32($"the type of tensor {name}");
            var type = (GgmlType)typeId;
            if (!GgmlTypes.TryGetBlock(type, out int blockValues, out int blockBytes))
                throw new ModelFormatException(path, $"tensor {name} has unknown ggml type id {typeId}.");
            if (dims[0] % blockValues != 0)
                throw new ModelFormatException(path, $"tensor {name} has rows of {dims[0]} values, not a multiple of the {type} block size {blockValues}.");
            long blocks = elements / blockValues;
            if (blocks > long.MaxValue / blockBytes) throw new ModelFormatException(path, $"tensor {name} is too large to address.");
            ulong offset = r.U64($"the offset of tensor {name}");
            if (offset % (ulong)alignment != 0)
                throw new ModelFormatException(path, $"tensor {name} starts at data offset {offset}, which is not a multiple of the alignment {alignment}.");
            if (offset > (ulong)length) throw new ModelFormatException(path, $"tensor {name} starts at data offset {offset}, past the end of the file ({length} bytes).");
            infos.Add(new GgufTensorInfo(name, type, dims, (long)offset, blocks * blockBytes));
        }

        long dataOffset = (r.Position + alignment - 1) / alignment * alignment;
        foreach (var t in infos)
        {
            if (t.ByteLength > length || dataOffset + t.Offset > length - t.ByteLength)
                throw new ModelFormatException(path, $"tensor {t.Name} ({t.Type}, {t.ByteLength} bytes at data offset {t.Offset}) extends past the end of the file ({length} bytes); the file is truncated or corrupt.");
        }
        return new Header(version, metadata, infos, alignment, infos.Count == 0 ? Math.Min(dataOffset, length) : dataOffset);
    }

    /// <summary>A bounds-checked little-endian reader over the mapped header.</summary>
    private struct Cursor(string path, byte* data, long length)
    {
        public long Position { get; private set; }
        public readonly long Remaining => length - Position;

        private ReadOnlySpan<byte> Take(long count, string what)
        {
            if (count < 0 || count > Remaining || count > int.MaxValue)
                throw new ModelFormatException(path, $"the file ends inside {what} (at byte {Position} of {length}); it is truncated or corrupt.");
            var span = new ReadOnlySpan<byte>(data + Position, (int)count);
            Position += count;
            return span;
        }

        public uint U32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));
        public ulong U64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, what));

        public string String(string what, long maxBytes = MaxStringBytes)
        {
            ulong n = U64(what);
            if (n > (ulong)maxBytes) throw new ModelFormatException(path, $"{what} claims a string of {n} bytes (at most {maxBytes} allowed).");
            if (n > (ulong)Remaining) throw new ModelFormatException(path, $"{what} claims a string of {n} bytes, past the end of the file; it is truncated or corrupt.");
            return Encoding.UTF8.GetString(Take((long)n, what));
        }

        public GgufValue Value(string key, GgufValueType type, int depth)
        {
            string what = $"the value of metadata {key}";
            switch (type)
            {
                case GgufValueType.UInt8: return new(type, Take(1, what)[0]);
                case GgufValueType.Int8: return new(type, (sbyte)Take(1, what)[0]);
                case GgufValueType.UInt16: return new(type, BinaryPrimitives.ReadUInt16LittleEndian(Take(2, what)));
                case GgufValueType.Int16: return new(type, BinaryPrimitives.ReadInt16LittleEndian(Take(2, what)));
                case GgufValueType.UInt32: return new(type, BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what)));
                case GgufValueType.Int32: return new(type, BinaryPrimitives.ReadInt32LittleEndian(Take(4, what)));
                case GgufValueType.Float32: return new(type, BinaryPrimitives.ReadSingleLittleEndian(Take(4, what)));
                case GgufValueType.Bool: return new(type, Take(1, what)[0] != 0);
                case GgufValueType.String: return new(type, String(what));
                case GgufValueType.UInt64: return new(type, BinaryPrimitives.ReadUInt64LittleEndian(Take(8, what)));
                case GgufValueType.Int64: return new(type, BinaryPrimitives.ReadInt64LittleEndian(Take(8, what)));
                case GgufValueType.Float64: return new(type, BinaryPrimitives.ReadDoubleLittleEndian(Take(8, what)));
                case GgufValueType.Array: return Array(key, depth);
                default: throw new ModelFormatException(path, $"metadata {key} has unknown value type {(uint)type}.");
            }
        }

        private GgufValue Array(string key, int depth)
        {
            if (depth >= MaxArrayDepth) throw new ModelFormatException(path, $"metadata {key} nests arrays deeper than {MaxArrayDepth} levels.");
            var elementType = (GgufValueType)U32($"the element type of metadata {key}");
            ulong count = U64($"the length of metadata {key}");
            int minBytes = elementType switch
            {
                GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
                GgufValueType.UInt16 or GgufValueType.Int16 => 2,
                GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
                GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 or GgufValueType.String => 8,
                GgufValueType.Array => 12,
                _ => throw new ModelFormatException(path, $"metadata {key} is an array of unknown value type {(uint)elementType}."),
            };
            if (count > (ulong)(Remaining / minBytes) || count > int.MaxValue / 8)
                throw new ModelFormatException(path, $"metadata {key} claims {count} elements, more than the rest of the file can hold; it is truncated or corrupt.");
            int n = (int)count;
            string what = $"the elements of metadata {key}";
            object value;
            switch (elementType)
            {
                case GgufValueType.UInt8: value = Take(n, what).ToArray(); break;
                case GgufValueType.Int8: value = MemoryMarshal.Cast<byte, sbyte>(Take(n, what)).ToArray(); break;
                case GgufValueType.Bool: { var b = Take(n, what); var a = new bool[n]; for (int i = 0; i < n; i++) a[i] = b[i] != 0; value = a; break; }
                case GgufValueType.UInt16: value = MemoryMarshal.Cast<byte, ushort>(Take(2L * n, what)).ToArray(); break;
                case GgufValueType.Int16: value = MemoryMarshal.Cast<byte, short>(Take(2L * n, what)).ToArray(); break;
                case GgufValueType.UInt32: value = MemoryMarshal.Cast<byte, uint>(Take(4L * n, what)).ToArray(); break;
                case GgufValueType.Int32: value = MemoryMarshal.Cast<byte, int>(Take(4L * n, what)).ToArray(); break;
                case GgufValueType.Float32: value = MemoryMarshal.Cast<byte, float>(Take(4L * n, what)).ToArray(); break;
                case GgufValueType.UInt64: value = MemoryMarshal.Cast<byte, ulong>(Take(8L * n, what)).ToArray(); break;
                case GgufValueType.Int64: value = MemoryMarshal.Cast<byte, long>(Take(8L * n, what)).ToArray(); break;
                case GgufValueType.Float64: value = MemoryMarshal.Cast<byte, double>(Take(8L * n, what)).ToArray(); break;
                case GgufValueType.String:
                {
                    var a = new string[n];
                    for (int i = 0; i < n; i++) a[i] = String(what);
                    value = a;
                    break;
                }
                default:
                {
                    var a = new object[n];
                    // gguf-py writes each inner array as its element type, count and values, with no type tag of its own.
                    for (int i = 0; i < n; i++) a[i] = Array(key, depth + 1);
                    value = a;
                    break;
                }
            }
            return new GgufValue(GgufValueType.Array, value, elementType);
        }
    }
}

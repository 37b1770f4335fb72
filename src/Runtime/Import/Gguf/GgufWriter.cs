using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace OnDeviceLlm.Runtime.Import.Gguf;

/// <summary>Writes GGUF version 3 headers: metadata of every value type and tensor infos.</summary>
public static class GgufWriter
{
    /// <summary>A GGUF file with metadata and no tensors (llama.cpp's "vocab-only" files have this shape).</summary>
    public static byte[] MetadataOnly(IEnumerable<KeyValuePair<string, GgufValue>> metadata)
    {
        using var stream = new MemoryStream();
        WriteHeader(stream, metadata.ToList(), []);
        return stream.ToArray();
    }

    /// <summary>
    /// The header up to the start of the tensor data: magic, version 3, counts, metadata, tensor infos (each tensor's
    /// offset relative to the data section), padded to <paramref name="alignment"/>.
    /// </summary>
    public static void WriteHeader(Stream output, IReadOnlyList<KeyValuePair<string, GgufValue>> metadata, IReadOnlyList<GgufTensorInfo> tensors,
                                   int alignment = GgufFile.DefaultAlignment)
    {
        var w = new BinaryWriter(output, Encoding.UTF8, leaveOpen: true);
        w.Write(GgufFile.Magic);
        w.Write(3u);
        w.Write((ulong)tensors.Count);
        w.Write((ulong)metadata.Count);
        foreach (var (key, value) in metadata)
        {
            WriteString(w, key);
            w.Write((uint)value.Type);
            WriteValue(w, value);
        }
        foreach (var t in tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Dims.Length);
            foreach (long d in t.Dims) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)t.Offset);
        }
        w.Flush();
        long position = output.Position;
        long padded = (position + alignment - 1) / alignment * alignment;
        for (long i = position; i < padded; i++) output.WriteByte(0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, GgufValue v)
    {
        switch (v.Value)
        {
            case byte x: w.Write(x); break;
            case sbyte x: w.Write(x); break;
            case ushort x: w.Write(x); break;
            case short x: w.Write(x); break;
            case uint x: w.Write(x); break;
            case int x: w.Write(x); break;
            case float x: w.Write(x); break;
            case bool x: w.Write((byte)(x ? 1 : 0)); break;
            case string x: WriteString(w, x); break;
            case ulong x: w.Write(x); break;
            case long x: w.Write(x); break;
            case double x: w.Write(x); break;
            case Array a: WriteArray(w, v.ElementType, a); break;
            default: throw new ArgumentException($"GGUF cannot store a value of type {v.Value.GetType().Name}.", nameof(v));
        }
    }

    /// <summary>An array: element type, count, elements (inner arrays of an array of arrays carry no type tag of their own).</summary>
    private static void WriteArray(BinaryWriter w, GgufValueType elementType, Array a)
    {
        w.Write((uint)elementType);
        w.Write((ulong)a.Length);
        switch (a)
        {
            case string[] s: foreach (string x in s) WriteString(w, x); break;
            case bool[] b: foreach (bool x in b) w.Write((byte)(x ? 1 : 0)); break;
            case object[] o: foreach (GgufValue x in o) WriteArray(w, x.ElementType, (Array)x.Value); break;
            case byte[] b: w.Write(b); break;
            case sbyte[] x: w.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case ushort[] x: w.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case short[] x: w.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case uint[] x: w.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case int[] x: w.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case float[] x: w.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case ulong[] x: w.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case long[] x: w.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case double[] x: w.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            default: throw new ArgumentException($"GGUF cannot store an array of {a.GetType().GetElementType()?.Name}.", nameof(a));
        }
    }
}

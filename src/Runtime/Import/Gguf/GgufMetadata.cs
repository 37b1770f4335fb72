using System.Globalization;

namespace OnDeviceLlm.Runtime.Import.Gguf;

/// <summary>
/// One metadata value. <see cref="Value"/> is the boxed scalar (byte, sbyte, ushort, short, uint, int, float, bool,
/// string, ulong, long, double) or, for arrays, a typed array of those (T[]) or object[] of nested <see cref="GgufValue"/>.
/// </summary>
public sealed record GgufValue(GgufValueType Type, object Value, GgufValueType ElementType = GgufValueType.UInt8)
{
    public override string ToString() => Value switch
    {
        string s => s.Length > 80 ? $"\"{s[..80]}…\"" : $"\"{s}\"",
        Array a => $"[{ElementType} × {a.Length}]",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => Value.ToString() ?? "",
    };
}

/// <summary>The key/value metadata of a GGUF file with typed, validating accessors.</summary>
public sealed class GgufMetadata
{
    private readonly Dictionary<string, GgufValue> _values;

    internal GgufMetadata(string path, Dictionary<string, GgufValue> values)
    {
        Path = path;
        _values = values;
    }

    public string Path { get; }
    public IReadOnlyDictionary<string, GgufValue> Values => _values;
    public bool Contains(string key) => _values.ContainsKey(key);

    public string? String(string key) => _values.TryGetValue(key, out var v)
        ? v.Value as string ?? throw Wrong(key, v, "a string")
        : null;

    public string RequireString(string key) => String(key) ?? throw Missing(key);

    /// <summary>Any integer type, range-checked into an int.</summary>
    public long? Integer(string key)
    {
        if (!_values.TryGetValue(key, out var v)) return null;
        return v.Value switch
        {
            byte b => b, sbyte b => b, ushort s => s, short s => s, uint u => u, int i => i, long l => l,
            ulong u when u <= long.MaxValue => (long)u,
            _ => throw Wrong(key, v, "an integer"),
        };
    }

    public int? Int(string key)
    {
        long? value = Integer(key);
        if (value is null) return null;
        if (value < 0 || value > int.MaxValue) throw new ModelFormatException(Path, $"metadata {key} = {value} is out of range.");
        return (int)value;
    }

    public int RequireInt(string key) => Int(key) ?? throw Missing(key);

    public float? Float(string key)
    {
        if (!_values.TryGetValue(key, out var v)) return null;
        return v.Value switch
        {
            float f => f, double d => (float)d,
            _ => Integer(key) is long l ? l : throw Wrong(key, v, "a number"),
        };
    }

    public bool? Bool(string key) => _values.TryGetValue(key, out var v)
        ? v.Value as bool? ?? throw Wrong(key, v, "a bool")
        : null;

    /// <summary>An array whose elements are all of type T (string[], float[], int[] …); null when absent.</summary>
    public T[]? Array<T>(string key) => _values.TryGetValue(key, out var v)
        ? v.Value as T[] ?? throw Wrong(key, v, $"an array of {typeof(T).Name}")
        : null;

    /// <summary>An array of any integer element type as ints (token types are int32 in some writers, uint8 in none seen but allowed).</summary>
    public int[]? IntArray(string key)
    {
        if (!_values.TryGetValue(key, out var v)) return null;
        return v.Value switch
        {
            int[] a => a,
            uint[] a when a.All(x => x <= int.MaxValue) => a.Select(x => (int)x).ToArray(),
            byte[] a => a.Select(x => (int)x).ToArray(),
            sbyte[] a => a.Select(x => (int)x).ToArray(),
            short[] a => a.Select(x => (int)x).ToArray(),
            ushort[] a => a.Select(x => (int)x).ToArray(),
            _ => throw Wrong(key, v, "an array of integers"),
        };
    }

    private ModelFormatException Wrong(string key, GgufValue v, string expected) =>
        new(Path, $"metadata {key} is {v.Type}{(v.Type == GgufValueType.Array ? " of " + v.ElementType : "")}, not {expected}.");

    private ModelFormatException Missing(string key) => new(Path, $"the required metadata key {key} is missing.");
}

using System.Text;
using System.Text.Json;

namespace OnDeviceLlm.Connector.Tools;

/// <summary>
/// One node of the JSON Schema subset the grammar enforces: objects (every declared property, in declaration
/// order), arrays of one item schema, strings, numbers, integers, booleans, null, and enums/consts of any JSON
/// values. Anything else (anyOf, type lists, refs, a missing type) accepts any JSON value.
/// </summary>
internal sealed class SchemaNode
{
    public enum NodeKind : byte { Object, Array, String, Number, Integer, Choice, Any }

    private SchemaNode(NodeKind kind) => Kind = kind;

    public NodeKind Kind { get; }
    /// <summary>Object: the text before each property's value (<c>{"a":</c>, <c>,"b":</c>), then the closing text.</summary>
    public string[] Literals { get; private init; } = [];
    public SchemaNode[] Values { get; private init; } = [];
    public SchemaNode? Items { get; private init; }
    /// <summary>Choice: the allowed values written as compact JSON.</summary>
    public string[] Options { get; private init; } = [];

    public static SchemaNode Parse(JsonElement schema, int depth = 0)
    {
        if (depth > JsonGrammar.MaxDepth || schema.ValueKind != JsonValueKind.Object) return new SchemaNode(NodeKind.Any);
        if (schema.TryGetProperty("const", out var constant)) return Choice([constant]);
        if (schema.TryGetProperty("enum", out var values) && values.ValueKind == JsonValueKind.Array && values.GetArrayLength() is > 0 and <= 64)
            return Choice([.. values.EnumerateArray()]);
        string? type = schema.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
        switch (type)
        {
            case "object":
                var keys = new List<string>();
                var nodes = new List<SchemaNode>();
                if (schema.TryGetProperty("properties", out var properties) && properties.ValueKind == JsonValueKind.Object)
                {
                    foreach (var p in properties.EnumerateObject())
                    {
                        keys.Add(p.Name);
                        nodes.Add(Parse(p.Value, depth + 1));
                    }
                }
                var literals = new string[keys.Count + 1];
                for (int i = 0; i < keys.Count; i++) literals[i] = (i == 0 ? "{" : ",") + JsonSerializer.Serialize(keys[i]) + ":";
                literals[^1] = keys.Count == 0 ? "{}" : "}";
                return new SchemaNode(NodeKind.Object) { Literals = literals, Values = [.. nodes] };
            case "array":
                return new SchemaNode(NodeKind.Array)
                {
                    Items = schema.TryGetProperty("items", out var items) ? Parse(items, depth + 1) : new SchemaNode(NodeKind.Any),
                };
            case "string": return new SchemaNode(NodeKind.String);
            case "number": return new SchemaNode(NodeKind.Number);
            case "integer": return new SchemaNode(NodeKind.Integer);
            case "boolean": return new SchemaNode(NodeKind.Choice) { Options = ["true", "false"] };
            case "null": return new SchemaNode(NodeKind.Choice) { Options = ["null"] };
            default: return new SchemaNode(NodeKind.Any);
        }
    }

    private static SchemaNode Choice(JsonElement[] values) =>
        new(NodeKind.Choice) { Options = [.. values.Select(v => JsonSerializer.Serialize(v))] };

    /// <summary>The shortest value this node accepts.</summary>
    public string Minimal() => Kind switch
    {
        NodeKind.Object => Literals.Length == 1 ? "{}" : string.Concat(Literals.Zip(Values, (l, v) => l + v.Minimal())) + Literals[^1],
        NodeKind.Array => "[]",
        NodeKind.String => "\"\"",
        NodeKind.Number or NodeKind.Integer => "0",
        NodeKind.Choice => Options[0],
        _ => "null",
    };
}

/// <summary>
/// Compact JSON that follows a schema (see <see cref="SchemaNode"/> for the subset): the value of
/// ChatResponseFormat.ForJsonSchema, and tool-call arguments following the function's parameter schema. A stack
/// of frames, one per open value, held in fixed arrays so that trial feeds allocate nothing.
/// </summary>
internal sealed class SchemaGrammar : OutputConstraint
{
    private struct Frame
    {
        public SchemaNode Node;
        public int Index;    // object: property index; array: 0 before '[', 1 after '[', 2 after an item
        public int Pos;      // object: position in Literals[Index], or -1 while the value is open; string/number: state
        public ulong Mask;   // choice: options still possible
    }

    // String states
    private const int StrOpen = 0, StrIn = 1, StrEscape = 2, StrHex1 = 3; // StrHex1..StrHex1+3: hex digits left 4..1
    // Number states
    private const int NumStart = 0, NumMinus = 1, NumZero = 2, NumInt = 3, NumFracStart = 4, NumFrac = 5, NumExpStart = 6, NumExpSign = 7, NumExp = 8;

    private readonly SchemaNode _root;
    private readonly Frame[] _frames = new Frame[JsonGrammar.MaxDepth + 2];
    private readonly JsonGrammar[] _any = new JsonGrammar[JsonGrammar.MaxDepth + 2];
    private int _depth;
    private bool _done;
    private int _whitespace;

    public SchemaGrammar(SchemaNode root)
    {
        _root = root;
        Reset();
    }

    /// <summary>Back to the state before any character.</summary>
    public void Reset()
    {
        _depth = 0;
        _done = false;
        Push(_root);
    }

    public override bool IsComplete => _done;

    public override OutputConstraint CreateScratch() => new SchemaGrammar(_root);

    public override void CopyFrom(OutputConstraint other)
    {
        var o = (SchemaGrammar)other;
        Array.Copy(o._frames, _frames, o._depth);
        for (int i = 0; i < o._depth; i++)
            if (o._frames[i].Node.Kind == SchemaNode.NodeKind.Any) Any(i).CopyFrom(o._any[i]);
        _depth = o._depth; _done = o._done; _whitespace = o._whitespace;
    }

    private JsonGrammar Any(int level) => _any[level] ??= new JsonGrammar(objectOnly: false);

    private bool Push(SchemaNode node)
    {
        if (_depth == _frames.Length) return false;
        _frames[_depth] = new Frame { Node = node, Mask = node.Kind == SchemaNode.NodeKind.Choice ? (node.Options.Length == 64 ? ulong.MaxValue : (1UL << node.Options.Length) - 1) : 0 };
        if (node.Kind == SchemaNode.NodeKind.Any) Any(_depth).Reset();
        _depth++;
        return true;
    }

    /// <summary>The value on top is complete: remove it and let its parent move on.</summary>
    private void Pop()
    {
        _depth--;
        if (_depth == 0) { _done = true; return; }
        ref var parent = ref _frames[_depth - 1];
        if (parent.Node.Kind == SchemaNode.NodeKind.Object) { parent.Index++; parent.Pos = 0; }
        else parent.Index = 2; // array: after an item
    }

    public override bool Feed(char c)
    {
        if (_done) return c is ' ' or '\n' or '\r' or '\t' && ++_whitespace <= JsonGrammar.MaxWhitespaceRun;
        ref var f = ref _frames[_depth - 1];
        var node = f.Node;
        switch (node.Kind)
        {
            case SchemaNode.NodeKind.Object:
            {
                string literal = node.Literals[f.Index];
                if (c != literal[f.Pos]) return false;
                if (++f.Pos < literal.Length) return true;
                if (f.Index == node.Values.Length) { Pop(); return true; }
                f.Pos = -1;
                return Push(node.Values[f.Index]);
            }
            case SchemaNode.NodeKind.Array:
                if (f.Index == 0) { if (c != '[') return false; f.Index = 1; return true; }
                if (c == ']') { Pop(); return true; }
                if (f.Index == 2)
                {
                    if (c != ',') return false;
                    f.Index = 3; // an item must follow
                    return Push(node.Items!);
                }
                return Push(node.Items!) && Feed(c);
            case SchemaNode.NodeKind.String:
                switch (f.Pos)
                {
                    case StrOpen: if (c != '"') return false; f.Pos = StrIn; return true;
                    case StrIn:
                        if (c == '"') { Pop(); return true; }
                        if (c == '\\') { f.Pos = StrEscape; return true; }
                        return c >= ' ';
                    case StrEscape:
                        if (c == 'u') { f.Pos = StrHex1; return true; }
                        if (c is '"' or '\\' or '/' or 'b' or 'f' or 'n' or 'r' or 't') { f.Pos = StrIn; return true; }
                        return false;
                    default:
                        if (!char.IsAsciiHexDigit(c)) return false;
                        f.Pos = f.Pos == StrHex1 + 3 ? StrIn : f.Pos + 1;
                        return true;
                }
            case SchemaNode.NodeKind.Number or SchemaNode.NodeKind.Integer:
                return FeedNumber(ref f, c, node.Kind == SchemaNode.NodeKind.Integer);
            case SchemaNode.NodeKind.Choice:
            {
                ulong next = 0;
                bool complete = false;
                for (int i = 0; i < node.Options.Length; i++)
                {
                    if ((f.Mask & (1UL << i)) == 0) continue;
                    string option = node.Options[i];
                    if (option.Length == f.Pos) complete = true;
                    else if (option[f.Pos] == c) next |= 1UL << i;
                }
                if (next != 0)
                {
                    f.Mask = next;
                    f.Pos++;
                    // An option that nothing longer extends ends here.
                    if (OnlyCompleteOptions(node, next, f.Pos)) Pop();
                    return true;
                }
                if (!complete) return false;
                Pop();
                return Feed(c);
            }
            default:
            {
                var json = _any[_depth - 1];
                if (json.Feed(c)) return true;
                if (!json.CanEnd) return false;
                Pop();
                return Feed(c);
            }
        }
    }

    private static bool OnlyCompleteOptions(SchemaNode node, ulong mask, int pos)
    {
        for (int i = 0; i < node.Options.Length; i++)
            if ((mask & (1UL << i)) != 0 && node.Options[i].Length != pos) return false;
        return true;
    }

    private bool FeedNumber(ref Frame f, char c, bool integer)
    {
        switch (f.Pos)
        {
            case NumStart:
                if (c == '-') { f.Pos = NumMinus; return true; }
                goto case NumMinus;
            case NumMinus:
                if (c == '0') { f.Pos = NumZero; return true; }
                if (c is >= '1' and <= '9') { f.Pos = NumInt; return true; }
                return false;
            case NumZero or NumInt:
                if (f.Pos == NumInt && char.IsAsciiDigit(c)) return true;
                if (!integer && c == '.') { f.Pos = NumFracStart; return true; }
                if (!integer && c is 'e' or 'E') { f.Pos = NumExpStart; return true; }
                break;
            case NumFracStart:
                if (!char.IsAsciiDigit(c)) return false;
                f.Pos = NumFrac;
                return true;
            case NumFrac:
                if (char.IsAsciiDigit(c)) return true;
                if (c is 'e' or 'E') { f.Pos = NumExpStart; return true; }
                break;
            case NumExpStart:
                if (c is '+' or '-') { f.Pos = NumExpSign; return true; }
                if (char.IsAsciiDigit(c)) { f.Pos = NumExp; return true; }
                return false;
            case NumExpSign:
                if (!char.IsAsciiDigit(c)) return false;
                f.Pos = NumExp;
                return true;
            case NumExp:
                if (char.IsAsciiDigit(c)) return true;
                break;
        }
        // A complete number ends at the first character that cannot continue it, which its parent then reads.
        Pop();
        return Feed(c);
    }

    public override string Completion()
    {
        if (_done) return "";
        var sb = new StringBuilder();
        for (int level = _depth - 1; level >= 0; level--)
        {
            var f = _frames[level];
            var node = f.Node;
            switch (node.Kind)
            {
                case SchemaNode.NodeKind.Object:
                {
                    int index = f.Index;
                    if (f.Pos >= 0) sb.Append(node.Literals[index], f.Pos, node.Literals[index].Length - f.Pos);
                    if (index == node.Values.Length) break;
                    if (f.Pos >= 0) sb.Append(node.Values[index].Minimal());
                    for (int i = index + 1; i < node.Values.Length; i++) sb.Append(node.Literals[i]).Append(node.Values[i].Minimal());
                    sb.Append(node.Literals[^1]);
                    break;
                }
                case SchemaNode.NodeKind.Array:
                    // After ',' the promised item is already open above this frame and closes itself.
                    sb.Append(f.Index == 0 ? "[]" : "]");
                    break;
                case SchemaNode.NodeKind.String:
                    sb.Append(f.Pos switch { StrOpen => "\"\"", StrIn => "\"", StrEscape => "n\"", _ => new string('0', StrHex1 + 4 - f.Pos) + "\"" });
                    break;
                case SchemaNode.NodeKind.Number or SchemaNode.NodeKind.Integer:
                    if (f.Pos is NumStart or NumMinus or NumFracStart or NumExpStart or NumExpSign) sb.Append('0');
                    break;
                case SchemaNode.NodeKind.Choice:
                    for (int i = 0; i < node.Options.Length; i++)
                    {
                        if ((f.Mask & (1UL << i)) == 0) continue;
                        sb.Append(node.Options[i], f.Pos, node.Options[i].Length - f.Pos);
                        break;
                    }
                    break;
                default:
                    sb.Append(_any[level].Completion());
                    break;
            }
        }
        return sb.ToString();
    }
}

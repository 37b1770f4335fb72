namespace OnDeviceLlm.Connector.Tools;

/// <summary>
/// Exactly one call in the generic tool convention, <c>{"tool_calls":[{"name":"NAME","arguments":{…}}]}</c>, compact,
/// with NAME one of the offered tools and the arguments following that tool's parameter schema
/// (<see cref="SchemaGrammar"/>; any JSON object when it has none). Used when the caller requires a call, so even a
/// model that never saw the convention produces one that parses and binds.
/// </summary>
internal sealed class ToolCallGrammar : OutputConstraint
{
    public const string Prefix = "{\"tool_calls\":[{\"name\":\"";
    public const string Middle = "\",\"arguments\":";
    public const string Suffix = "}]}";

    private readonly string[] _names;
    private readonly SchemaNode?[] _schemas;
    private readonly OutputConstraint[] _arguments;
    private int _chosen;
    private readonly char[] _name;
    private int _nameLength;
    private int _phase;   // 0 prefix, 1 name, 2 middle, 3 arguments, 4 suffix, 5 done
    private int _at;      // position within the current literal
    private int _whitespace;

    /// <param name="names">The tools that may be called.</param>
    /// <param name="schemas">Each tool's parameter schema, parallel to <paramref name="names"/>; null entries (or none) accept any object.</param>
    public ToolCallGrammar(IReadOnlyList<string> names, IReadOnlyList<SchemaNode?>? schemas = null)
    {
        if (names.Count == 0) throw new ArgumentException("At least one tool name is required.", nameof(names));
        foreach (string n in names)
        {
            if (n.Length == 0 || n.Contains('"') || n.Contains('\\'))
                throw new ArgumentException($"Tool name '{n}' cannot be used: names must be non-empty and free of quotes and backslashes.", nameof(names));
        }
        _names = [.. names];
        _schemas = schemas is null ? new SchemaNode?[names.Count] : [.. schemas];
        if (_schemas.Length != _names.Length) throw new ArgumentException("One schema per tool name is required.", nameof(schemas));
        _arguments = [.. _schemas.Select(OutputConstraint (s) => s is null ? new JsonGrammar() : new SchemaGrammar(s))];
        _name = new char[names.Max(n => n.Length)];
    }

    public override bool IsComplete => _phase == 5;

    public override OutputConstraint CreateScratch() => new ToolCallGrammar(_names, _schemas);

    public override void CopyFrom(OutputConstraint other)
    {
        var o = (ToolCallGrammar)other;
        Array.Copy(o._name, _name, o._nameLength);
        _nameLength = o._nameLength; _phase = o._phase; _at = o._at; _whitespace = o._whitespace; _chosen = o._chosen;
        // Only the chosen tool's arguments have a state (the others are untouched since construction).
        if (_phase >= 3) _arguments[_chosen].CopyFrom(o._arguments[_chosen]);
    }

    public override bool Feed(char c)
    {
        switch (_phase)
        {
            case 0: return Literal(Prefix, c);
            case 1:
                if (c == '"')
                {
                    int chosen = NameIndex(_nameLength);
                    if (chosen < 0) return false;
                    _chosen = chosen;
                    _phase = 2; _at = 1; // the quote is Middle's first character
                    return true;
                }
                if (_nameLength == _name.Length) return false;
                _name[_nameLength] = c;
                if (!IsNamePrefix(_nameLength + 1)) return false;
                _nameLength++;
                return true;
            case 2:
                if (!Literal(Middle, c)) return false;
                if (_phase == 3) Restart(_arguments[_chosen]);
                return true;
            case 3:
                if (!_arguments[_chosen].Feed(c)) return false;
                if (_arguments[_chosen].IsComplete) { _phase = 4; _at = 0; }
                return true;
            case 4: return Literal(Suffix, c);
            default:
                return c is ' ' or '\n' or '\r' or '\t' && ++_whitespace <= JsonGrammar.MaxWhitespaceRun;
        }
    }

    private bool Literal(string literal, char c)
    {
        if (c != literal[_at]) return false;
        if (++_at == literal.Length) { _phase++; _at = 0; }
        return true;
    }

    private static void Restart(OutputConstraint arguments)
    {
        if (arguments is JsonGrammar json) json.Reset();
        else ((SchemaGrammar)arguments).Reset();
    }

    /// <summary>Whether the first <paramref name="length"/> characters of the name buffer begin an offered name.</summary>
    private bool IsNamePrefix(int length)
    {
        var typed = _name.AsSpan(0, length);
        foreach (string n in _names)
            if (n.AsSpan().StartsWith(typed)) return true;
        return false;
    }

    private int NameIndex(int length)
    {
        var typed = _name.AsSpan(0, length);
        for (int i = 0; i < _names.Length; i++)
            if (_names[i].AsSpan().SequenceEqual(typed)) return i;
        return -1;
    }

    private string MinimalArguments(int tool) => _schemas[tool]?.Minimal() ?? "{}";

    public override string Completion()
    {
        int firstMatch() => Array.FindIndex(_names, n => n.AsSpan().StartsWith(_name.AsSpan(0, _nameLength)));
        return _phase switch
        {
            0 => Prefix[_at..] + _names[0] + Middle + MinimalArguments(0) + Suffix,
            1 => _names[firstMatch()][_nameLength..] + Middle + MinimalArguments(firstMatch()) + Suffix,
            2 => Middle[_at..] + MinimalArguments(_chosen) + Suffix,
            3 => _arguments[_chosen].Completion() + Suffix,
            4 => Suffix[_at..],
            _ => "",
        };
    }
}

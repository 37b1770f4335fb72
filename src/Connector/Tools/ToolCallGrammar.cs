namespace OnDeviceLlm.Connector.Tools;

/// <summary>
/// Exactly one call in the generic tool convention, <c>{"tool_calls":[{"name":"NAME","arguments":{…}}]}</c>, compact,
/// with NAME one of the offered tools and the arguments any JSON object (<see cref="JsonGrammar"/>). Used when the
/// caller requires a call, so even a model that never saw the convention produces one that parses.
/// </summary>
internal sealed class ToolCallGrammar : OutputConstraint
{
    public const string Prefix = "{\"tool_calls\":[{\"name\":\"";
    public const string Middle = "\",\"arguments\":";
    public const string Suffix = "}]}";

    private readonly string[] _names;
    private readonly char[] _name;
    private int _nameLength;
    private int _phase;   // 0 prefix, 1 name, 2 middle, 3 arguments, 4 suffix, 5 done
    private int _at;      // position within the current literal
    private int _whitespace;
    private readonly JsonGrammar _arguments = new();

    public ToolCallGrammar(IReadOnlyList<string> names)
    {
        if (names.Count == 0) throw new ArgumentException("At least one tool name is required.", nameof(names));
        foreach (string n in names)
        {
            if (n.Length == 0 || n.Contains('"') || n.Contains('\\'))
                throw new ArgumentException($"Tool name '{n}' cannot be used: names must be non-empty and free of quotes and backslashes.", nameof(names));
        }
        _names = [.. names];
        _name = new char[names.Max(n => n.Length)];
    }

    public override bool IsComplete => _phase == 5;

    public override OutputConstraint CreateScratch() => new ToolCallGrammar(_names);

    public override void CopyFrom(OutputConstraint other)
    {
        var o = (ToolCallGrammar)other;
        Array.Copy(o._name, _name, o._nameLength);
        _nameLength = o._nameLength; _phase = o._phase; _at = o._at; _whitespace = o._whitespace;
        _arguments.CopyFrom(o._arguments);
    }

    public override bool Feed(char c)
    {
        switch (_phase)
        {
            case 0: return Literal(Prefix, c);
            case 1:
                if (c == '"')
                {
                    if (!IsName(_nameLength, exact: true)) return false;
                    _phase = 2; _at = 1; // the quote is Middle's first character
                    return true;
                }
                if (_nameLength == _name.Length) return false;
                _name[_nameLength] = c;
                if (!IsName(_nameLength + 1, exact: false)) return false;
                _nameLength++;
                return true;
            case 2: return Literal(Middle, c);
            case 3:
                if (!_arguments.Feed(c)) return false;
                if (_arguments.IsComplete) { _phase = 4; _at = 0; }
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

    /// <summary>Whether the first <paramref name="length"/> characters of the name buffer begin (or, exact, equal) an offered name.</summary>
    private bool IsName(int length, bool exact)
    {
        var typed = _name.AsSpan(0, length);
        foreach (string n in _names)
        {
            if (exact ? n.AsSpan().SequenceEqual(typed) : n.AsSpan().StartsWith(typed)) return true;
        }
        return false;
    }

    public override string Completion()
    {
        string firstMatch() => _names.First(n => n.AsSpan().StartsWith(_name.AsSpan(0, _nameLength)));
        return _phase switch
        {
            0 => Prefix[_at..] + _names[0] + Middle + "{}" + Suffix,
            1 => firstMatch()[_nameLength..] + Middle + "{}" + Suffix,
            2 => Middle[_at..] + "{}" + Suffix,
            3 => _arguments.Completion() + Suffix,
            4 => Suffix[_at..],
            _ => "",
        };
    }
}

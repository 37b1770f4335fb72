using System.Text;

namespace OnDeviceLlm.Connector.Tools;

/// <summary>
/// RFC 8259 JSON, one top-level object (or, for schema leaves, any one value), as a pushdown automaton over characters. Whitespace runs are capped
/// (<see cref="MaxWhitespaceRun"/>) and nesting is bounded (<see cref="MaxDepth"/>), so a model cannot stall in
/// indentation or recurse without end; strings may hold any character but controls, with the standard escapes.
/// </summary>
internal sealed class JsonGrammar : OutputConstraint
{
    public const int MaxDepth = 32;
    public const int MaxWhitespaceRun = 4;

    private enum S : byte
    {
        Start,          // before the top-level object
        Value,          // a value is expected (after ':' or ',' in an array)
        ArrayFirst,     // after '[': a value or ']'
        ObjectFirst,    // after '{': a key or '}'
        Key,            // after ',' in an object: a key
        Colon,          // after a key
        After,          // after a value inside a container: ',' or the closing bracket
        Str, Escape, Unicode,
        Minus, Zero, Int, FracStart, Frac, ExpStart, ExpSign, Exp,
        Literal,
        Done,
    }

    private readonly bool _objectOnly;
    private readonly char[] _stack = new char[MaxDepth];
    private int _depth;
    private S _state = S.Start;
    private bool _stringIsKey;
    private int _hexLeft;
    private string _literal = "";
    private int _literalAt;
    private int _whitespace;

    /// <param name="objectOnly">True: the text is one object (ResponseFormat.Json); false: any one value.</param>
    public JsonGrammar(bool objectOnly = true) => _objectOnly = objectOnly;

    public override bool IsComplete => _state == S.Done;

    /// <summary>Whether the value may end here: complete, or a top-level number that more digits could still extend.</summary>
    public bool CanEnd => _state == S.Done || (_depth == 0 && _state is S.Zero or S.Int or S.Frac or S.Exp);

    public override OutputConstraint CreateScratch() => new JsonGrammar(_objectOnly);

    /// <summary>Back to the state before any character.</summary>
    public void Reset()
    {
        _depth = 0; _state = S.Start; _stringIsKey = false; _hexLeft = 0; _literal = ""; _literalAt = 0; _whitespace = 0;
    }

    public override void CopyFrom(OutputConstraint other)
    {
        var o = (JsonGrammar)other;
        Array.Copy(o._stack, _stack, o._depth);
        _depth = o._depth; _state = o._state; _stringIsKey = o._stringIsKey; _hexLeft = o._hexLeft;
        _literal = o._literal; _literalAt = o._literalAt; _whitespace = o._whitespace;
    }

    public override bool Feed(char c)
    {
        switch (_state)
        {
            case S.Str:
                if (c == '"') { EndValueOrKey(); return true; }
                if (c == '\\') { _state = S.Escape; return true; }
                return c >= ' ';
            case S.Escape:
                if (c == 'u') { _state = S.Unicode; _hexLeft = 4; return true; }
                if (c is '"' or '\\' or '/' or 'b' or 'f' or 'n' or 'r' or 't') { _state = S.Str; return true; }
                return false;
            case S.Unicode:
                if (!char.IsAsciiHexDigit(c)) return false;
                if (--_hexLeft == 0) _state = S.Str;
                return true;
            case S.Literal:
                if (c != _literal[_literalAt]) return false;
                if (++_literalAt == _literal.Length) EndValue();
                return true;
            case S.Minus:
                if (c == '0') { _state = S.Zero; return true; }
                if (c is >= '1' and <= '9') { _state = S.Int; return true; }
                return false;
            case S.Zero:
                if (c == '.') { _state = S.FracStart; return true; }
                if (c is 'e' or 'E') { _state = S.ExpStart; return true; }
                return EndNumber(c);
            case S.Int:
                if (char.IsAsciiDigit(c)) return true;
                if (c == '.') { _state = S.FracStart; return true; }
                if (c is 'e' or 'E') { _state = S.ExpStart; return true; }
                return EndNumber(c);
            case S.FracStart:
                if (!char.IsAsciiDigit(c)) return false;
                _state = S.Frac;
                return true;
            case S.Frac:
                if (char.IsAsciiDigit(c)) return true;
                if (c is 'e' or 'E') { _state = S.ExpStart; return true; }
                return EndNumber(c);
            case S.ExpStart:
                if (c is '+' or '-') { _state = S.ExpSign; return true; }
                if (char.IsAsciiDigit(c)) { _state = S.Exp; return true; }
                return false;
            case S.ExpSign:
                if (!char.IsAsciiDigit(c)) return false;
                _state = S.Exp;
                return true;
            case S.Exp:
                if (char.IsAsciiDigit(c)) return true;
                return EndNumber(c);
        }

        if (c is ' ' or '\n' or '\r' or '\t') return ++_whitespace <= MaxWhitespaceRun;
        _whitespace = 0;
        switch (_state)
        {
            case S.Start:
                return _objectOnly ? c == '{' && Push('{', S.ObjectFirst) : StartValue(c);
            case S.Value:
                return StartValue(c);
            case S.ArrayFirst:
                if (c == ']') { Pop(); return true; }
                return StartValue(c);
            case S.ObjectFirst:
                if (c == '}') { Pop(); return true; }
                return StartKey(c);
            case S.Key:
                return StartKey(c);
            case S.Colon:
                if (c != ':') return false;
                _state = S.Value;
                return true;
            case S.After:
                if (c == ',') { _state = _stack[_depth - 1] == '{' ? S.Key : S.Value; return true; }
                if (c == (_stack[_depth - 1] == '{' ? '}' : ']')) { Pop(); return true; }
                return false;
            default: // Done: nothing but whitespace may follow
                return false;
        }
    }

    private bool StartKey(char c)
    {
        if (c != '"') return false;
        _state = S.Str;
        _stringIsKey = true;
        return true;
    }

    private bool StartValue(char c)
    {
        switch (c)
        {
            case '"': _state = S.Str; _stringIsKey = false; return true;
            case '{': return Push('{', S.ObjectFirst);
            case '[': return Push('[', S.ArrayFirst);
            case '-': _state = S.Minus; return true;
            case '0': _state = S.Zero; return true;
            case >= '1' and <= '9': _state = S.Int; return true;
            case 't': return StartLiteral("true");
            case 'f': return StartLiteral("false");
            case 'n': return StartLiteral("null");
            default: return false;
        }
    }

    private bool StartLiteral(string literal)
    {
        _literal = literal;
        _literalAt = 1;
        _state = S.Literal;
        return true;
    }

    private bool Push(char bracket, S next)
    {
        if (_depth == MaxDepth) return false;
        _stack[_depth++] = bracket;
        _state = next;
        return true;
    }

    private void Pop()
    {
        _depth--;
        EndValue();
    }

    private void EndValueOrKey()
    {
        if (_stringIsKey) { _stringIsKey = false; _state = S.Colon; }
        else EndValue();
    }

    private void EndValue()
    {
        _state = _depth == 0 ? S.Done : S.After;
        _whitespace = 0;
    }

    /// <summary>A number ends at the first character that cannot continue it; that character then counts as what follows.</summary>
    private bool EndNumber(char c)
    {
        EndValue();
        return Feed(c);
    }

    public override string Completion()
    {
        var sb = new StringBuilder();
        S state = _state;
        bool closeString = false;
        switch (state)
        {
            case S.Start: return _objectOnly ? "{}" : "null";
            case S.Escape: sb.Append('n'); closeString = true; break;
            case S.Unicode: sb.Append('0', _hexLeft); closeString = true; break;
            case S.Str: closeString = true; break;
            case S.Literal: sb.Append(_literal, _literalAt, _literal.Length - _literalAt); break;
            case S.Minus or S.FracStart or S.ExpStart or S.ExpSign: sb.Append('0'); break;
            case S.Value: sb.Append("null"); break;
            case S.Key: sb.Append("\"\":null"); break;
            case S.Colon: sb.Append(":null"); break;
        }
        if (closeString)
        {
            sb.Append('"');
            if (_stringIsKey) sb.Append(":null");
        }
        if (state == S.Done) return sb.ToString();
        for (int i = _depth - 1; i >= 0; i--) sb.Append(_stack[i] == '{' ? '}' : ']');
        return sb.ToString();
    }
}

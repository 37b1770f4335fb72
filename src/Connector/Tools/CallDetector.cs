using System.Text;

namespace OnDeviceLlm.Connector.Tools;

/// <summary>
/// Under ToolMode.Auto, decides from the first characters whether an answer is a call in the tool convention:
/// text that could still be the start of <c>{"tool_calls"</c> is held back; once it diverges it is released and
/// the rest streams through; once it matches, everything is kept back for parsing as a call.
/// </summary>
internal sealed class CallDetector
{
    public const string Marker = "{\"tool_calls\"";

    private readonly StringBuilder _text = new();
    private int _released;

    public bool Deciding { get; private set; } = true;
    public bool IsCall { get; private set; }

    /// <summary>Everything generated so far, shown or not.</summary>
    public string Text => _text.ToString();

    /// <summary>The call text from its opening brace (leading whitespace dropped).</summary>
    public string CallText => Text.TrimStart();

    /// <summary>Adds generated text; returns what may be shown now.</summary>
    public string Push(string piece)
    {
        _text.Append(piece);
        if (IsCall) return "";
        if (!Deciding) return Release();
        string sofar = CallText;
        if (sofar.Length < Marker.Length && Marker.StartsWith(sofar, StringComparison.Ordinal)) return "";
        Deciding = false;
        if (sofar.StartsWith(Marker, StringComparison.Ordinal))
        {
            IsCall = true;
            return "";
        }
        return Release();
    }

    /// <summary>Gives up holding back (end of the answer, or a call that did not parse): returns all text not yet shown.</summary>
    public string Release()
    {
        Deciding = false;
        IsCall = false;
        string rest = _text.ToString(_released, _text.Length - _released);
        _released = _text.Length;
        return rest;
    }
}

using OnDeviceLlm.Connector.ChatTemplates;
using OnDeviceLlm.Runtime;
using OnDeviceLlm.Runtime.Tokenization;

namespace OnDeviceLlm.Connector;

/// <summary>
/// Encodes rendered chat text. The BOS/EOS and end-of-turn strings a template writes are turned into their ids
/// here rather than left to the tokenizer, because a SentencePiece tokenizer.model does not treat "&lt;s&gt;"
/// written in text as the control token; everything between them goes through the tokenizer, which matches
/// the vocabulary's added tokens (such as &lt;start_of_turn&gt;) itself.
/// </summary>
internal sealed class PromptEncoder
{
    private readonly TextTokenizer _tokenizer;
    private readonly (string Text, int Id)[] _specials;

    public PromptEncoder(LanguageModel model, ChatTemplate template)
    {
        _tokenizer = model.RequireTokenizer();
        var special = model.Special;
        Tokens = new ChatTemplateTokens(
            special.Bos is int bos ? _tokenizer.Decode([bos]) : "",
            special.Eos.Count > 0 ? _tokenizer.Decode([special.Eos[0]]) : "");
        var specials = new List<(string, int)>();
        if (special.Bos is int b && Tokens.Bos.Length > 0) specials.Add((Tokens.Bos, b));
        if (special.Eos.Count > 0 && Tokens.Eos.Length > 0) specials.Add((Tokens.Eos, special.Eos[0]));
        var stopIds = new List<int>(special.Eos);
        foreach (string token in template.StopTokens)
        {
            if (_tokenizer.TokenToId(token) is not int id) continue;
            specials.Add((token, id));
            stopIds.Add(id);
        }
        // Longest first, so that a special string containing another is matched whole.
        _specials = [.. specials.OrderByDescending(s => s.Item1.Length)];
        StopTokenIds = [.. stopIds.Distinct()];
    }

    public ChatTemplateTokens Tokens { get; }

    /// <summary>Ids that end an answer: the model's EOS ids and the template's end-of-turn tokens that the vocabulary has.</summary>
    public int[] StopTokenIds { get; }

    public int[] Encode(string text)
    {
        var ids = new List<int>(text.Length / 3 + 8);
        int start = 0;
        while (start < text.Length)
        {
            int next = text.Length, nextId = -1, nextLength = 0;
            foreach (var (s, id) in _specials)
            {
                int at = text.IndexOf(s, start, StringComparison.Ordinal);
                if (at >= 0 && at < next) { next = at; nextId = id; nextLength = s.Length; }
            }
            if (next > start) ids.AddRange(_tokenizer.Encode(text[start..next]));
            if (nextId < 0) break;
            ids.Add(nextId);
            start = next + nextLength;
        }
        return [.. ids];
    }
}

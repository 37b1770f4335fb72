using Microsoft.ML.Tokenizers;

namespace OnDeviceLlm.Runtime.Tokenization;

/// <summary>A SentencePiece unigram tokenizer.model, encoded and decoded entirely by the library's SentencePieceTokenizer (BPE models go through HfBpeBackend.FromSentencePiece).</summary>
internal sealed class SentencePieceBackend : TokenizerBackend
{
    private readonly SentencePieceTokenizer _spm;
    private readonly bool _addBos;
    private readonly bool _addEos;
    private readonly HashSet<int> _special;
    private readonly Dictionary<string, int> _added;

    private SentencePieceBackend(SentencePieceTokenizer spm, bool addBos, bool addEos, HashSet<int> special, Dictionary<string, int> added)
    {
        _spm = spm;
        _addBos = addBos;
        _addEos = addEos;
        _special = special;
        _added = added;
        int size = 0;
        foreach (int id in spm.Vocabulary.Values) size = Math.Max(size, id + 1);
        foreach (int id in added.Values) size = Math.Max(size, id + 1);
        VocabSize = size;
    }

    public static SentencePieceBackend Create(byte[] model, TokenizerConfig config)
    {
        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (AddedToken t in config.AddedTokens) added[t.Content] = t.Id;
        SentencePieceTokenizer spm;
        try
        {
            spm = SentencePieceTokenizer.Create(new MemoryStream(model, writable: false), addBeginningOfSentence: false, addEndOfSentence: false,
                specialTokens: added.Count > 0 ? added : null);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            throw new TokenizerException($"tokenizer.model: not a readable SentencePiece model ({ex.Message}).", ex);
        }
        var special = new HashSet<int> { spm.BeginningOfSentenceId, spm.EndOfSentenceId, spm.UnknownId };
        foreach (AddedToken t in config.AddedTokens)
            if (t.Special || config.SpecialContents.Contains(t.Content)) special.Add(t.Id);
        // Llama-family default: BOS on, EOS off, unless tokenizer_config.json says otherwise.
        return new SentencePieceBackend(spm, config.AddBos ?? true, config.AddEos ?? false, special, added);
    }

    public override Tokenizer Inner => _spm;
    public override int VocabSize { get; }
    public override bool IsSpecial(int id) => _special.Contains(id);

    public override int? TokenToId(string token) =>
        _added.TryGetValue(token, out int id) || _spm.Vocabulary.TryGetValue(token, out id) ? id : null;

    public override void Encode(string text, bool addSpecialTokens, List<int> ids) =>
        ids.AddRange(_spm.EncodeToIds(text, addSpecialTokens && _addBos, addSpecialTokens && _addEos,
            considerPreTokenization: false, considerNormalization: true));

    public override string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens)
    {
        foreach (int id in ids)
            if ((uint)id >= (uint)VocabSize)
                throw new TokenizerException($"Cannot decode token id {id}: it is outside the vocabulary (size {VocabSize}).");
        return _spm.Decode(ids.ToArray(), considerSpecialTokens: !skipSpecialTokens);
    }
}

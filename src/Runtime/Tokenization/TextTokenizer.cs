using System.Text.Json;
using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Tokenization;

/// <summary>
/// A tokenizer built from a model's original tokenizer files: tokenizer.json (Hugging Face BPE, byte-level or
/// SentencePiece-style with byte fallback), tokenizer.model (SentencePiece), or vocab.json + merges.txt (GPT-2).
/// Encodes without BOS/EOS unless asked; added and special tokens written in the text are always matched whole.
/// </summary>
public sealed class TextTokenizer
{
    /// <summary>Files a tokenizer may consist of, in the order Load prefers the model files.</summary>
    private static readonly string[] KnownFiles =
        ["tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"];

    private readonly TokenizerBackend _backend;

    private TextTokenizer(TokenizerBackend backend) => _backend = backend;

    /// <summary>The underlying Microsoft.ML.Tokenizers object (a BpeTokenizer or SentencePieceTokenizer).</summary>
    public Microsoft.ML.Tokenizers.Tokenizer Inner => _backend.Inner;

    /// <summary>One more than the largest token id, added tokens included.</summary>
    public int VocabSize => _backend.VocabSize;

    public static TextTokenizer Load(TokenizerFiles files)
    {
        ArgumentNullException.ThrowIfNull(files);
        IReadOnlyDictionary<string, byte[]> f = files.Files;
        if (f.TryGetValue(GgufTokenizer.FileName, out byte[]? gguf)) return new TextTokenizer(GgufTokenizer.FromBytes(gguf));
        TokenizerConfig config = TokenizerConfig.Read(f);
        if (f.TryGetValue("tokenizer.json", out byte[]? json))
        {
            HfBpeBackend? backend = null;
            TokenizerConfig.Parse("tokenizer.json", json, root => backend = HfBpeBackend.FromTokenizerJson(root, config));
            return new TextTokenizer(backend!);
        }
        if (f.TryGetValue("tokenizer.model", out byte[]? model))
        {
            SentencePieceModel spm = SentencePieceModel.Parse(model);
            return new TextTokenizer(spm.ModelType == 2 ? HfBpeBackend.FromSentencePiece(spm, config) : SentencePieceBackend.Create(model, config));
        }
        if (f.TryGetValue("vocab.json", out byte[]? vocab))
        {
            if (!f.TryGetValue("merges.txt", out byte[]? merges))
                throw new TokenizerException("merges.txt: missing; a vocab.json tokenizer needs its merges.txt next to it.");
            return new TextTokenizer(HfBpeBackend.FromVocabAndMerges(vocab, merges, config));
        }
        throw new TokenizerException("No tokenizer model file: expected tokenizer.json, tokenizer.model, or vocab.json with merges.txt.");
    }

    /// <summary>Loads a tokenizer.json / tokenizer.model file (with the config files beside it), a folder holding them, or a GGUF file's tokenizer.</summary>
    public static TextTokenizer LoadFromPath(string fileOrFolder)
    {
        ArgumentException.ThrowIfNullOrEmpty(fileOrFolder);
        if (Directory.Exists(fileOrFolder)) return Load(ReadFiles(fileOrFolder));
        if (!File.Exists(fileOrFolder)) throw new TokenizerException($"{fileOrFolder}: no such file or folder.");
        if (Import.Gguf.GgufFile.IsGguf(fileOrFolder)) return new TextTokenizer(GgufTokenizer.FromFile(fileOrFolder));
        string role = Path.GetExtension(fileOrFolder).ToLowerInvariant() switch
        {
            ".json" => "tokenizer.json",
            ".model" => "tokenizer.model",
            _ => throw new TokenizerException($"{fileOrFolder}: not a tokenizer file (expected a .json or .model file, or a folder)."),
        };
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal) { [role] = ReadFile(fileOrFolder) };
        string folder = Path.GetDirectoryName(Path.GetFullPath(fileOrFolder))!;
        foreach (string name in KnownFiles.AsSpan(4))
        {
            string path = Path.Combine(folder, name);
            if (File.Exists(path)) files[name] = ReadFile(path);
        }
        try { return Load(new TokenizerFiles(files)); }
        catch (TokenizerException ex) when (!ex.Message.StartsWith(fileOrFolder, StringComparison.Ordinal))
        {
            throw new TokenizerException($"{fileOrFolder}: {ex.Message}", ex);
        }
    }

    /// <summary>The tokenizer files present in a folder, as Load takes them (the importer embeds these bytes).</summary>
    public static TokenizerFiles ReadFiles(string folder)
    {
        if (!Directory.Exists(folder)) throw new TokenizerException($"{folder}: no such folder.");
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (string name in KnownFiles)
        {
            string path = Path.Combine(folder, name);
            if (File.Exists(path)) files[name] = ReadFile(path);
        }
        if (!files.ContainsKey("tokenizer.json") && !files.ContainsKey("tokenizer.model") && !files.ContainsKey("vocab.json"))
            throw new TokenizerException($"{folder}: no tokenizer found (expected tokenizer.json, tokenizer.model, or vocab.json with merges.txt).");
        return new TokenizerFiles(files);
    }

    private static byte[] ReadFile(string path)
    {
        try { return File.ReadAllBytes(path); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerException($"{path}: cannot be read ({ex.Message}).", ex);
        }
    }

    /// <summary>Token ids of the text; BOS/EOS (as the tokenizer's config says) only when addSpecialTokens.</summary>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        _backend.Encode(text, addSpecialTokens, ids);
        return ids;
    }

    /// <summary>The text of the ids; an id outside the vocabulary raises TokenizerException.</summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false) => _backend.Decode(ids, skipSpecialTokens);

    /// <summary>Whether the id is a special (control) token, such as BOS, EOS, padding or a chat marker.</summary>
    public bool IsSpecial(int id) => _backend.IsSpecial(id);

    /// <summary>The id of a vocabulary entry or added token, written exactly as stored; null when absent.</summary>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _backend.TokenToId(token);
    }
}

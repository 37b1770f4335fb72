namespace OnDeviceLlm.Runtime.Model;

/// <summary>Special token ids and chat metadata read from tokenizer_config.json / generation_config.json.</summary>
public sealed record SpecialTokens
{
    public int? Bos { get; init; }
    /// <summary>Every id that ends generation (generation_config may list several).</summary>
    public IReadOnlyList<int> Eos { get; init; } = [];
    public int? Pad { get; init; }
    /// <summary>Whether encoding a prompt prepends BOS (tokenizer_config add_bos_token, family default otherwise).</summary>
    public bool AddBos { get; init; }
    /// <summary>The Hugging Face chat_template string, when the checkpoint has one.</summary>
    public string? ChatTemplate { get; init; }
}

/// <summary>The tokenizer's original files (name → bytes), embedded verbatim in the model file.</summary>
public sealed record TokenizerFiles(IReadOnlyDictionary<string, byte[]> Files)
{
    public static readonly TokenizerFiles None = new(new Dictionary<string, byte[]>());
    public bool IsEmpty => Files.Count == 0;
}

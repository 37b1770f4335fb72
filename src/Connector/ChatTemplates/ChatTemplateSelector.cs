namespace OnDeviceLlm.Connector.ChatTemplates;

/// <summary>
/// Picks the chat format for a model: first from the Hugging Face chat_template stored at conversion (by the
/// markers each family's template contains, as llama.cpp's detection does), then from the special tokens the
/// vocabulary defines, then from the architecture.
/// </summary>
public static class ChatTemplateSelector
{
    /// <param name="architecture">ModelConfig.Architecture: llama, gemma, gemma2, phi2, falcon, stablelm.</param>
    /// <param name="hfChatTemplate">The checkpoint's Jinja chat_template, or null.</param>
    /// <param name="hasToken">Whether the vocabulary defines a token spelled exactly so.</param>
    public static ChatTemplate Select(string architecture, string? hfChatTemplate, Func<string, bool> hasToken)
    {
        ArgumentNullException.ThrowIfNull(architecture);
        ArgumentNullException.ThrowIfNull(hasToken);
        if (!string.IsNullOrEmpty(hfChatTemplate) && FromHfTemplate(hfChatTemplate) is ChatTemplate known) return known;
        if (hasToken("<|start_header_id|>") && hasToken("<|eot_id|>")) return new Llama3ChatTemplate();
        if (hasToken("<start_of_turn>") && hasToken("<end_of_turn>")) return new GemmaChatTemplate();
        if (hasToken("<|im_start|>") && hasToken("<|im_end|>")) return new ChatMlTemplate();
        return architecture.ToLowerInvariant() switch
        {
            "gemma" or "gemma2" => new GemmaChatTemplate(),
            "phi2" => new Phi2ChatTemplate(),
            "falcon" => new FalconChatTemplate(),
            "stablelm" => new ZephyrChatTemplate(),
            "llama" => new Llama2ChatTemplate(),
            // An unknown family gets the most widespread fine-tuning format.
            _ => new ChatMlTemplate(),
        };
    }

    /// <summary>The family whose markers a Jinja chat_template contains, or null when none matches.</summary>
    public static ChatTemplate? FromHfTemplate(string template)
    {
        ArgumentNullException.ThrowIfNull(template);
        if (template.Contains("<|start_header_id|>", StringComparison.Ordinal)) return new Llama3ChatTemplate();
        if (template.Contains("<start_of_turn>", StringComparison.Ordinal)) return new GemmaChatTemplate();
        if (template.Contains("<|im_start|>", StringComparison.Ordinal)) return new ChatMlTemplate();
        if (template.Contains("<|user|>", StringComparison.Ordinal) && template.Contains("<|assistant|>", StringComparison.Ordinal)) return new ZephyrChatTemplate();
        if (template.Contains("[INST]", StringComparison.Ordinal)) return new Llama2ChatTemplate();
        if (template.Contains("Falcon:", StringComparison.Ordinal)) return new FalconChatTemplate();
        if (template.Contains("Instruct:", StringComparison.Ordinal) && template.Contains("Output:", StringComparison.Ordinal)) return new Phi2ChatTemplate();
        return null;
    }
}

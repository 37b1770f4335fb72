using System.Text;
using Microsoft.Extensions.AI;

namespace OnDeviceLlm.Connector.ChatTemplates;

/// <summary>
/// ChatML (OpenAI's format, used by Qwen, StableLM 2 chat, many fine-tunes):
/// <c>&lt;|im_start|&gt;{role}\n{text}&lt;|im_end|&gt;\n</c> per message, system as its own turn, contents verbatim.
/// </summary>
public sealed class ChatMlTemplate : ChatTemplate
{
    public override string Name => "chatml";
    public override IReadOnlyList<string> StopTokens => ["<|im_end|>"];

    public override string Render(IReadOnlyList<ChatMessage> messages, ChatTemplateTokens tokens, bool addGenerationPrompt = true)
    {
        var sb = new StringBuilder();
        foreach (var m in messages)
            sb.Append("<|im_start|>").Append(m.Role.Value).Append('\n').Append(Content(m)).Append("<|im_end|>\n");
        if (addGenerationPrompt) sb.Append("<|im_start|>assistant\n");
        return sb.ToString();
    }
}

using System.Text;
using Microsoft.Extensions.AI;

namespace OnDeviceLlm.Connector.ChatTemplates;

/// <summary>
/// Llama 2 chat format (meta-llama/Llama-2-7b-chat-hf chat_template): every user turn is
/// <c>&lt;s&gt;[INST] {text} [/INST]</c>, every answer <c> {text} &lt;/s&gt;</c>; the system message is folded
/// into the first user turn as <c>&lt;&lt;SYS&gt;&gt;\n{system}\n&lt;&lt;/SYS&gt;&gt;\n\n</c>. Contents are trimmed as the HF template does.
/// </summary>
public sealed class Llama2ChatTemplate : ChatTemplate
{
    public override string Name => "llama2";

    public override string Render(IReadOnlyList<ChatMessage> messages, ChatTemplateTokens tokens, bool addGenerationPrompt = true)
    {
        var (system, rest) = SplitSystem(messages);
        var sb = new StringBuilder();
        bool first = true;
        foreach (var m in rest)
        {
            if (m.Role == ChatRole.User)
            {
                sb.Append(tokens.Bos).Append("[INST] ");
                if (first && system is not null) sb.Append("<<SYS>>\n").Append(system.Trim()).Append("\n<</SYS>>\n\n");
                sb.Append(Content(m).Trim()).Append(" [/INST]");
            }
            else if (m.Role == ChatRole.Assistant)
            {
                sb.Append(' ').Append(Content(m).Trim()).Append(' ').Append(tokens.Eos);
            }
            else throw UnsupportedRole(m.Role);
            first = false;
        }
        // A system message with no user turn yet still reaches the model, in the only place Llama 2 has for it.
        if (first && system is not null) sb.Append(tokens.Bos).Append("[INST] <<SYS>>\n").Append(system.Trim()).Append("\n<</SYS>>\n\n [/INST]");
        return sb.ToString();
    }
}

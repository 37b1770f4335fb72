using System.Text;
using Microsoft.Extensions.AI;

namespace OnDeviceLlm.Connector.ChatTemplates;

/// <summary>
/// Zephyr format, used by StableLM Zephyr (stabilityai/stablelm-zephyr-3b, stablelm-2-zephyr-1_6b):
/// <c>&lt;|{role}|&gt;\n{text}{eos}\n</c> per message (EOS is &lt;|endoftext|&gt; for StableLM), system as its own turn,
/// and <c>&lt;|assistant|&gt;\n</c> to start the answer.
/// </summary>
public sealed class ZephyrChatTemplate : ChatTemplate
{
    public override string Name => "zephyr";

    public override string Render(IReadOnlyList<ChatMessage> messages, ChatTemplateTokens tokens, bool addGenerationPrompt = true)
    {
        string eos = tokens.Eos.Length > 0 ? tokens.Eos : "<|endoftext|>";
        var sb = new StringBuilder();
        foreach (var m in messages)
        {
            if (m.Role != ChatRole.System && m.Role != ChatRole.User && m.Role != ChatRole.Assistant) throw UnsupportedRole(m.Role);
            sb.Append("<|").Append(m.Role.Value).Append("|>\n").Append(Content(m)).Append(eos).Append('\n');
        }
        if (addGenerationPrompt) sb.Append("<|assistant|>\n");
        return sb.ToString();
    }
}

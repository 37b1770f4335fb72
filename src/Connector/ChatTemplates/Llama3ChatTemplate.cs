using System.Text;
using Microsoft.Extensions.AI;

namespace OnDeviceLlm.Connector.ChatTemplates;

/// <summary>
/// Llama 3 / 3.x instruct format (meta-llama/Meta-Llama-3-8B-Instruct chat_template):
/// <c>&lt;|begin_of_text|&gt;&lt;|start_header_id|&gt;{role}&lt;|end_header_id|&gt;\n\n{text}&lt;|eot_id|&gt;</c> per message, system
/// included as its own turn, contents trimmed; an answer ends with &lt;|eot_id|&gt;.
/// </summary>
public sealed class Llama3ChatTemplate : ChatTemplate
{
    public override string Name => "llama3";
    public override IReadOnlyList<string> StopTokens => ["<|eot_id|>", "<|eom_id|>"];

    public override string Render(IReadOnlyList<ChatMessage> messages, ChatTemplateTokens tokens, bool addGenerationPrompt = true)
    {
        var sb = new StringBuilder(tokens.Bos);
        foreach (var m in messages)
            sb.Append("<|start_header_id|>").Append(m.Role.Value).Append("<|end_header_id|>\n\n").Append(Content(m).Trim()).Append("<|eot_id|>");
        if (addGenerationPrompt) sb.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
        return sb.ToString();
    }
}

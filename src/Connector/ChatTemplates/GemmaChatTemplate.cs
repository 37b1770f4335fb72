using System.Text;
using Microsoft.Extensions.AI;

namespace OnDeviceLlm.Connector.ChatTemplates;

/// <summary>
/// Gemma / Gemma 2 instruction format (google/gemma-2b-it chat_template):
/// <c>&lt;bos&gt;&lt;start_of_turn&gt;user\n{text}&lt;end_of_turn&gt;\n&lt;start_of_turn&gt;model\n</c>.
/// Gemma has no system role (its HF template raises on one); as Gemma 3's template does, the system text
/// opens the first user turn, followed by a blank line. Contents are trimmed as the HF template does.
/// </summary>
public sealed class GemmaChatTemplate : ChatTemplate
{
    public override string Name => "gemma";
    public override IReadOnlyList<string> StopTokens => ["<end_of_turn>"];

    public override string Render(IReadOnlyList<ChatMessage> messages, ChatTemplateTokens tokens, bool addGenerationPrompt = true)
    {
        var (system, rest) = SplitSystem(messages);
        var sb = new StringBuilder(tokens.Bos);
        foreach (var m in rest)
        {
            string role = m.Role == ChatRole.Assistant ? "model" : m.Role == ChatRole.User ? "user" : throw UnsupportedRole(m.Role);
            sb.Append("<start_of_turn>").Append(role).Append('\n');
            if (system is not null && role == "user")
            {
                sb.Append(system.Trim()).Append("\n\n");
                system = null;
            }
            sb.Append(Content(m).Trim()).Append("<end_of_turn>\n");
        }
        if (system is not null) sb.Append("<start_of_turn>user\n").Append(system.Trim()).Append("<end_of_turn>\n");
        if (addGenerationPrompt) sb.Append("<start_of_turn>model\n");
        return sb.ToString();
    }
}

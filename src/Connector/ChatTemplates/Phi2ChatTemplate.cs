using System.Text;
using Microsoft.Extensions.AI;

namespace OnDeviceLlm.Connector.ChatTemplates;

/// <summary>
/// Phi-2's QA format from its model card (microsoft/phi-2 ships no chat template):
/// <c>Instruct: {text}\nOutput: {answer}\n</c>. The model was not trained with a system role, so system text
/// comes first as plain lines. With no end-of-turn token, an answer ends at the next "\nInstruct:" (or EOS).
/// </summary>
public sealed class Phi2ChatTemplate : ChatTemplate
{
    public override string Name => "phi2";
    public override IReadOnlyList<string> StopSequences => ["\nInstruct:"];

    public override string Render(IReadOnlyList<ChatMessage> messages, ChatTemplateTokens tokens, bool addGenerationPrompt = true)
    {
        var (system, rest) = SplitSystem(messages);
        var sb = new StringBuilder();
        if (system is not null) sb.Append(system.Trim()).Append('\n');
        foreach (var m in rest)
        {
            if (m.Role == ChatRole.User) sb.Append("Instruct: ").Append(Content(m).Trim()).Append('\n');
            else if (m.Role == ChatRole.Assistant) sb.Append("Output: ").Append(Content(m).Trim()).Append('\n');
            else throw UnsupportedRole(m.Role);
        }
        if (addGenerationPrompt) sb.Append("Output:");
        return sb.ToString();
    }
}

using System.Text;
using Microsoft.Extensions.AI;

namespace OnDeviceLlm.Connector.ChatTemplates;

/// <summary>
/// Falcon instruct/chat format (tiiuae/falcon-7b-instruct and falcon-180B-chat chat_template): messages joined by
/// "\n" as <c>System: {text}</c>, <c>User: {text}</c>, <c>Falcon: {text}</c>, ending with "\nFalcon:" for the answer.
/// Falcon has no end-of-turn token, so an answer also ends at the next "\nUser:".
/// </summary>
public sealed class FalconChatTemplate : ChatTemplate
{
    public override string Name => "falcon";
    public override IReadOnlyList<string> StopSequences => ["\nUser:"];

    public override string Render(IReadOnlyList<ChatMessage> messages, ChatTemplateTokens tokens, bool addGenerationPrompt = true)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            if (i > 0) sb.Append('\n');
            sb.Append(m.Role == ChatRole.System ? "System: " : m.Role == ChatRole.User ? "User: " : m.Role == ChatRole.Assistant ? "Falcon: " : throw UnsupportedRole(m.Role));
            sb.Append(Content(m));
        }
        if (addGenerationPrompt) sb.Append("\nFalcon:");
        return sb.ToString();
    }
}

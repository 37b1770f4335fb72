using System.Text;
using Microsoft.Extensions.AI;

namespace OnDeviceLlm.Connector.ChatTemplates;

/// <summary>The special-token strings a template writes into the prompt, as the model's tokenizer spells them.</summary>
/// <param name="Bos">The beginning-of-sequence token (for example <c>&lt;s&gt;</c> or <c>&lt;bos&gt;</c>); empty when the model has none.</param>
/// <param name="Eos">The end-of-sequence token (for example <c>&lt;/s&gt;</c> or <c>&lt;|endoftext|&gt;</c>); empty when the model has none.</param>
public sealed record ChatTemplateTokens(string Bos, string Eos);

/// <summary>
/// Turns a conversation into the prompt text a chat model was fine-tuned on. The rendered text holds the
/// family's special tokens as text (the tokenizer maps them back to their ids), so it is encoded without
/// adding BOS again. One subclass per family under this folder; users can supply their own with
/// <see cref="Create"/> or by subclassing.
/// </summary>
public abstract class ChatTemplate
{
    /// <summary>A short family name, such as "gemma" or "chatml".</summary>
    public abstract string Name { get; }

    /// <summary>Special tokens (as text) that end an assistant turn besides the model's EOS ids, for example Gemma's &lt;end_of_turn&gt;.</summary>
    public virtual IReadOnlyList<string> StopTokens => [];

    /// <summary>Text that ends an assistant turn in families without an end-of-turn token, for example Falcon's "\nUser:".</summary>
    public virtual IReadOnlyList<string> StopSequences => [];

    /// <summary>
    /// Renders <paramref name="messages"/>; with <paramref name="addGenerationPrompt"/> the text ends where the
    /// assistant's next answer begins.
    /// </summary>
    public abstract string Render(IReadOnlyList<ChatMessage> messages, ChatTemplateTokens tokens, bool addGenerationPrompt = true);

    /// <summary>
    /// A template from a function <c>(messages, tokens, addGenerationPrompt) =&gt; text</c>, for formats this library
    /// does not know; <paramref name="stopSequences"/> and <paramref name="stopTokens"/> end an answer as the built-in families' do.
    /// </summary>
    public static ChatTemplate Create(string name, Func<IReadOnlyList<ChatMessage>, ChatTemplateTokens, bool, string> render,
        IReadOnlyList<string>? stopSequences = null, IReadOnlyList<string>? stopTokens = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(render);
        return new DelegateChatTemplate(name, render, stopSequences ?? [], stopTokens ?? []);
    }

    /// <summary>The message text: the concatenated text contents (other content kinds have no text form here).</summary>
    protected static string Content(ChatMessage message) => message.Text;

    /// <summary>Collects the system messages (joined by a blank line) and returns the other messages in order.</summary>
    protected static (string? System, List<ChatMessage> Others) SplitSystem(IReadOnlyList<ChatMessage> messages)
    {
        StringBuilder? system = null;
        var rest = new List<ChatMessage>(messages.Count);
        foreach (var m in messages)
        {
            if (m.Role == ChatRole.System)
            {
                system ??= new StringBuilder();
                if (system.Length > 0) system.Append("\n\n");
                system.Append(Content(m));
            }
            else rest.Add(m);
        }
        return (system?.ToString(), rest);
    }

    /// <summary>Throws for roles a family has no turn for, instead of silently dropping the message.</summary>
    protected InvalidOperationException UnsupportedRole(ChatRole role) =>
        new($"The {Name} chat template has no turn for role '{role}'; use system, user or assistant messages.");

    public override string ToString() => Name;

    private sealed class DelegateChatTemplate(string name, Func<IReadOnlyList<ChatMessage>, ChatTemplateTokens, bool, string> render,
        IReadOnlyList<string> stopSequences, IReadOnlyList<string> stopTokens) : ChatTemplate
    {
        public override string Name => name;
        public override IReadOnlyList<string> StopSequences => stopSequences;
        public override IReadOnlyList<string> StopTokens => stopTokens;
        public override string Render(IReadOnlyList<ChatMessage> messages, ChatTemplateTokens tokens, bool addGenerationPrompt = true) =>
            render(messages, tokens, addGenerationPrompt);
    }
}

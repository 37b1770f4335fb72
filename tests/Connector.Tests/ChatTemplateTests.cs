using Microsoft.Extensions.AI;
using OnDeviceLlm.Connector.ChatTemplates;

namespace OnDeviceLlm.Connector.Tests;

/// <summary>Exact renderings against each family's published format (the HF chat_template output for the same messages).</summary>
public sealed class ChatTemplateTests
{
    private static readonly ChatMessage[] Full =
    [
        new(ChatRole.System, "You are helpful."),
        new(ChatRole.User, "Hi!"),
        new(ChatRole.Assistant, "Hello."),
        new(ChatRole.User, "How are you?"),
    ];

    private static readonly ChatMessage[] UserOnly = [new(ChatRole.User, "Hi!")];

    [Fact]
    public void Gemma_folds_the_system_text_into_the_first_user_turn()
    {
        var t = new GemmaChatTemplate();
        Assert.Equal(
            "<bos><start_of_turn>user\nYou are helpful.\n\nHi!<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n" +
            "<start_of_turn>user\nHow are you?<end_of_turn>\n<start_of_turn>model\n",
            t.Render(Full, new("<bos>", "<eos>")));
        Assert.Equal("<bos><start_of_turn>user\nHi!<end_of_turn>\n", t.Render(UserOnly, new("<bos>", "<eos>"), addGenerationPrompt: false));
        Assert.Equal(["<end_of_turn>"], t.StopTokens);
    }

    [Fact]
    public void Llama2_wraps_the_system_prompt_in_sys_tags_inside_the_first_instruction()
    {
        Assert.Equal(
            "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] How are you? [/INST]",
            new Llama2ChatTemplate().Render(Full, new("<s>", "</s>")));
        Assert.Equal("<s>[INST] Hi! [/INST]", new Llama2ChatTemplate().Render(UserOnly, new("<s>", "</s>")));
    }

    [Fact]
    public void Llama3_gives_every_message_a_header_and_eot()
    {
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            new Llama3ChatTemplate().Render(Full, new("<|begin_of_text|>", "<|end_of_text|>")));
        Assert.Contains("<|eot_id|>", new Llama3ChatTemplate().StopTokens);
    }

    [Fact]
    public void ChatMl_keeps_the_system_turn_and_contents_verbatim()
    {
        Assert.Equal(
            "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n" +
            "<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n",
            new ChatMlTemplate().Render(Full, new("", "")));
    }

    [Fact]
    public void Zephyr_for_StableLM_ends_each_turn_with_eos()
    {
        Assert.Equal(
            "<|system|>\nYou are helpful.<|endoftext|>\n<|user|>\nHi!<|endoftext|>\n<|assistant|>\nHello.<|endoftext|>\n" +
            "<|user|>\nHow are you?<|endoftext|>\n<|assistant|>\n",
            new ZephyrChatTemplate().Render(Full, new("", "<|endoftext|>")));
    }

    [Fact]
    public void Phi2_uses_its_instruct_output_format_with_a_text_stop()
    {
        Assert.Equal("You are helpful.\nInstruct: Hi!\nOutput: Hello.\nInstruct: How are you?\nOutput:",
            new Phi2ChatTemplate().Render(Full, new("", "<|endoftext|>")));
        Assert.Equal(["\nInstruct:"], new Phi2ChatTemplate().StopSequences);
    }

    [Fact]
    public void Falcon_labels_turns_and_stops_at_the_next_user_line()
    {
        Assert.Equal("System: You are helpful.\nUser: Hi!\nFalcon: Hello.\nUser: How are you?\nFalcon:",
            new FalconChatTemplate().Render(Full, new("", "<|endoftext|>")));
        Assert.Equal(["\nUser:"], new FalconChatTemplate().StopSequences);
    }

    [Fact]
    public void Roles_a_family_cannot_express_are_rejected()
    {
        var tool = new ChatMessage(ChatRole.Tool, "42");
        Assert.Throws<InvalidOperationException>(() => new GemmaChatTemplate().Render([tool], new("", "")));
        Assert.Throws<InvalidOperationException>(() => new Phi2ChatTemplate().Render([tool], new("", "")));
    }

    [Theory]
    [InlineData("llama", null, typeof(Llama2ChatTemplate))]
    [InlineData("gemma", null, typeof(GemmaChatTemplate))]
    [InlineData("gemma2", null, typeof(GemmaChatTemplate))]
    [InlineData("phi2", null, typeof(Phi2ChatTemplate))]
    [InlineData("falcon", null, typeof(FalconChatTemplate))]
    [InlineData("stablelm", null, typeof(ZephyrChatTemplate))]
    [InlineData("mystery", null, typeof(ChatMlTemplate))]
    [InlineData("stablelm", "{% for message in messages %}{{'<|im_start|>' + message['role'] }}{% endfor %}", typeof(ChatMlTemplate))]
    [InlineData("llama", "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>' }}", typeof(Llama3ChatTemplate))]
    [InlineData("falcon", "{{ 'Falcon:' }}", typeof(FalconChatTemplate))]
    [InlineData("llama", "{{ bos_token + '[INST] ' + content + ' [/INST]' }}", typeof(Llama2ChatTemplate))]
    [InlineData("stablelm", "{{ '<|user|>\n' + message['content'] + eos_token }}{{ '<|assistant|>' }}", typeof(ZephyrChatTemplate))]
    [InlineData("llama", "{{ something unknown }}", typeof(Llama2ChatTemplate))]
    public void The_template_follows_the_stored_chat_template_then_the_architecture(string architecture, string? hfTemplate, Type expected)
    {
        Assert.IsType(expected, ChatTemplateSelector.Select(architecture, hfTemplate, _ => false));
    }

    [Fact]
    public void Vocabulary_markers_pick_the_format_when_there_is_no_stored_template()
    {
        var llama3 = new HashSet<string> { "<|start_header_id|>", "<|eot_id|>" };
        Assert.IsType<Llama3ChatTemplate>(ChatTemplateSelector.Select("llama", null, llama3.Contains));
        var chatml = new HashSet<string> { "<|im_start|>", "<|im_end|>" };
        Assert.IsType<ChatMlTemplate>(ChatTemplateSelector.Select("stablelm", null, chatml.Contains));
    }

    [Fact]
    public void The_real_gemma_tokenizer_config_chat_template_is_recognised()
    {
        string config = File.ReadAllText(Path.Combine(TestModels.Shared, "models", "gemma-tokenizer", "tokenizer_config.json"));
        string template = System.Text.Json.JsonDocument.Parse(config).RootElement.GetProperty("chat_template").GetString()!;
        Assert.IsType<GemmaChatTemplate>(ChatTemplateSelector.FromHfTemplate(template));
    }

    [Fact]
    public async Task A_user_template_overrides_the_detected_one_and_its_stop_sequences_apply()
    {
        using var model = TestModels.LoadChatModel();
        static string Render(IReadOnlyList<ChatMessage> messages, ChatTemplateTokens tokens, bool generation) =>
            string.Concat(messages.Select(m => $"{m.Role}: {m.Text}\n")) + (generation ? "assistant:" : "");
        using var plain = new OnDeviceChatClient(model, new OnDeviceChatClientOptions { ChatTemplate = ChatTemplate.Create("qa", Render) });
        using var stopping = new OnDeviceChatClient(model, new OnDeviceChatClientOptions { ChatTemplate = ChatTemplate.Create("qa", Render, stopSequences: [" "]) });
        var options = new ChatOptions { Temperature = 1f, Seed = 1, MaxOutputTokens = 40 };

        Assert.Equal("user: Hi!\nassistant:", plain.RenderPrompt(UserOnly).Text);
        string full = (await plain.GetResponseAsync(UserOnly, options)).Text;
        int space = full.IndexOf(' ');
        Assert.True(space >= 0, $"the sampled text has no space: '{full}'");
        Assert.Equal(full[..space], (await stopping.GetResponseAsync(UserOnly, options)).Text);
    }

    [Fact]
    public void The_model_eos_text_becomes_the_eos_id_even_inside_text()
    {
        using var model = TestModels.LoadChatModel();
        using var client = new OnDeviceChatClient(model, new OnDeviceChatClientOptions { ChatTemplate = new ZephyrChatTemplate() });
        var (text, ids) = client.RenderPrompt(UserOnly);
        Assert.Equal("<|user|>\nHi!<|endoftext|>\n<|assistant|>\n", text);
        Assert.Single(ids, id => id == 0);
    }
}

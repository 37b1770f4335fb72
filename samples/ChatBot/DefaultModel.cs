namespace OnDeviceLlm.Samples.ChatBot;

/// <summary>Locates the default model: stories260K.gguf in the shared folder beside the repository.</summary>
internal static class DefaultModel
{
    public static string? Find()
    {
        foreach (string start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "shared", "models", "stories260K", "stories260K.gguf");
                if (File.Exists(candidate)) return candidate;
            }
        }
        return null;
    }
}

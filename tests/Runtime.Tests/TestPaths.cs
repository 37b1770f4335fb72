namespace OnDeviceLlm.Runtime.Tests;

/// <summary>Locates ../shared (fixtures and real models) next to the repository root.</summary>
public static class TestPaths
{
    public static string RepositoryRoot { get; } = FindRoot();

    public static string Shared => Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared"));
    public static string Fixtures => Path.Combine(Shared, "fixtures");
    public static string Models => Path.Combine(Shared, "models");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Connector.sln"))) return dir.FullName;
        throw new InvalidOperationException("Connector.sln not found above " + AppContext.BaseDirectory);
    }
}

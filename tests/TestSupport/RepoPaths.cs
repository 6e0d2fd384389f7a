namespace TestSupport;

/// <summary>Paths inside the repository, found from the test assembly's location.</summary>
public static class RepoPaths
{
    private static readonly Lazy<string> s_root = new(FindRoot);

    /// <summary>The repository root (the directory holding Gateway.sln).</summary>
    public static string Root => s_root.Value;

    /// <summary>
    /// The shared real input (the Azure LLM inference traces), read in place, never copied into the repository: from
    /// <c>$GATEWAY_SHARED_DATA</c> if set, else <c>../shared/data</c> beside the repository, else <c>/work/shared/data</c>
    /// (where a clone elsewhere, such as CI's, finds it on these machines).
    /// </summary>
    public static string SharedData => s_sharedData.Value;

    private static readonly Lazy<string> s_sharedData = new(() =>
    {
        string?[] candidates =
        [
            Environment.GetEnvironmentVariable("GATEWAY_SHARED_DATA"),
            Path.GetFullPath(Path.Combine(Root, "..", "shared", "data")),
            "/work/shared/data",
        ];
        return candidates.FirstOrDefault(c => !string.IsNullOrEmpty(c) && Directory.Exists(c)) ?? candidates[1]!;
    });

    /// <summary>The conversation trace of Azure's LLM inference dataset (2023).</summary>
    public static string AzureConversationTrace => Path.Combine(SharedData, "azure-llm-2023", "AzureLLMInferenceTrace_conv.csv");

    /// <summary>A path under the root.</summary>
    public static string Combine(params string[] parts) => Path.Combine([Root, .. parts]);

    private static string FindRoot()
    {
        var baked = typeof(RepoPaths).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
            .Cast<System.Reflection.AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == "RepoRoot")?.Value;
        if (baked is not null && File.Exists(Path.Combine(baked, "Gateway.sln")))
        {
            return Path.GetFullPath(baked);
        }

        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Gateway.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"Gateway.sln not found above {AppContext.BaseDirectory}.");
    }
}

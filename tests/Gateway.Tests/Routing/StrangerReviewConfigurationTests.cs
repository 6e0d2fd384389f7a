using Gateway.Configuration;
using Microsoft.Extensions.Configuration;
using TestSupport;

namespace Gateway.Tests.Routing;

/// <summary>
/// Configuration findings of a stranger's review of fleet routing (issue 14): an Ollama-style model name with ':' as a
/// key, model names differing only in case across layers or between a name and an alias, a typo'd
/// <c>InferenceAware.*</c> cluster setting. Each is a start-up (and reload) error naming the keys, through the same
/// validator the gateway runs.
/// </summary>
public sealed class StrangerReviewConfigurationTests
{
    private static IReadOnlyList<string> Errors(params Dictionary<string, string?>[] layers)
    {
        var builder = new ConfigurationBuilder().AddJsonFile(RepoPaths.Combine("appsettings.json"));
        foreach (var layer in layers)
        {
            builder.AddInMemoryCollection(layer);
        }

        return ConfigurationValidator.Validate(builder.Build()).Errors;
    }

    /// <summary>Stranger review, issue 14, finding 7: "qwen2.5:7b" as a key said only "is not a known setting"; the error now names the alias workaround.</summary>
    [Fact]
    public void A_model_name_with_a_colon_as_a_key_is_refused_with_the_alias_workaround_stranger_review()
    {
        var error = Assert.Single(Errors(new Dictionary<string, string?> { ["Gateway:Models:qwen2.5:7b:Cluster"] = "model-http" }));
        Assert.Contains("Gateway:Models:qwen2.5:7b", error, StringComparison.Ordinal);
        Assert.Contains("Aliases", error, StringComparison.Ordinal);
        Assert.Contains("'qwen2.5:7b'", error, StringComparison.Ordinal);

        // The workaround itself validates and a typo of a real setting still gets its "did you mean".
        Assert.Empty(Errors(new Dictionary<string, string?> { ["Gateway:Models:qwen25-7b:Cluster"] = "model-http", ["Gateway:Models:qwen25-7b:Aliases:0"] = "qwen2.5:7b" }));
        Assert.Contains("did you mean Cluster?", Assert.Single(Errors(new Dictionary<string, string?> { ["Gateway:Models:llama:Cluster"] = "model-http", ["Gateway:Models:llama:Clustr"] = "x" })), StringComparison.Ordinal);
    }

    /// <summary>Stranger review, issue 14, finding 8: Llama in one layer and llama in another merged silently into one model.</summary>
    [Fact]
    public void Models_differing_only_in_case_across_layers_or_aliases_are_refused_naming_both_stranger_review()
    {
        var errors = Errors(
            new Dictionary<string, string?> { ["Gateway:Models:Llama:Cluster"] = "model-http" },
            new Dictionary<string, string?> { ["Gateway:Models:llama:Rewrite"] = "meta-llama/Llama-3.1-8B" });
        var error = Assert.Single(errors);
        Assert.Contains("Gateway:Models:Llama", error, StringComparison.Ordinal);
        Assert.Contains("Gateway:Models:llama", error, StringComparison.Ordinal);
        Assert.Contains("differ only in case", error, StringComparison.Ordinal);

        var alias = Assert.Single(Errors(new Dictionary<string, string?>
        {
            ["Gateway:Models:llama:Cluster"] = "model-http",
            ["Gateway:Models:qwen:Cluster"] = "model-http",
            ["Gateway:Models:qwen:Aliases:0"] = "LLAMA",
        }));
        Assert.Contains("Gateway:Models:qwen:Aliases:0: 'LLAMA' differs only in case from Gateway:Models:llama", alias, StringComparison.Ordinal);

        // The same spelling in two layers is one model, as before.
        Assert.Empty(Errors(new Dictionary<string, string?> { ["Gateway:Models:llama:Cluster"] = "model-http" }, new Dictionary<string, string?> { ["Gateway:Models:llama:Rewrite"] = "x" }));
    }

    /// <summary>Stranger review, issue 14, finding 9: InferenceAware.PrefixWieght was accepted and ignored.</summary>
    [Fact]
    public void A_typod_inference_aware_metadata_key_is_refused_with_did_you_mean_stranger_review()
    {
        var error = Assert.Single(Errors(new Dictionary<string, string?>
        {
            ["ReverseProxy:Clusters:model-http:LoadBalancingPolicy"] = "InferenceAware",
            ["ReverseProxy:Clusters:model-http:Metadata:InferenceAware.PrefixWieght"] = "3",
        }));
        Assert.Contains("ReverseProxy:Clusters:model-http:Metadata:InferenceAware.PrefixWieght is not a known setting (did you mean InferenceAware.PrefixWeight?)", error, StringComparison.Ordinal);
        Assert.Empty(Errors(new Dictionary<string, string?>
        {
            ["ReverseProxy:Clusters:model-http:LoadBalancingPolicy"] = "InferenceAware",
            ["ReverseProxy:Clusters:model-http:Metadata:InferenceAware.PrefixWeight"] = "3",
        }));
    }
}

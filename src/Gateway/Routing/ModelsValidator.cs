using Gateway.Configuration;

namespace Gateway.Routing;

/// <summary>The rules of <c>Gateway:Models</c>, run at start-up and on every reload candidate; each message names its key.</summary>
internal static class ModelsValidator
{
    public static void Validate(ConfigMap<ModelOptions> models, IReadOnlySet<string> clusterIds, List<string> errors, IConfiguration? raw = null)
    {
        if (raw is IConfigurationRoot root)
        {
            CaseCollisions(root, errors);
        }

        var names = new Dictionary<string, string>(StringComparer.Ordinal); // a name or alias → the key that claims it
        var folded = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase); // the same, to find names differing only in case
        foreach (var name in models.Keys)
        {
            names[name] = $"{ModelOptions.Section}:{name}";
            folded.TryAdd(name, names[name]);
        }

        foreach (var (name, model) in models)
        {
            var key = $"{ModelOptions.Section}:{name}";
            if (string.IsNullOrWhiteSpace(model.Cluster))
            {
                errors.Add($"{key}:Cluster is required: the cluster under ReverseProxy:Clusters that serves '{name}'.");
            }
            else if (!clusterIds.Contains(model.Cluster))
            {
                errors.Add($"{key}:Cluster names cluster '{model.Cluster}', which is not defined under ReverseProxy:Clusters.");
            }

            if (model.GrpcCluster is { } grpc && !clusterIds.Contains(grpc))
            {
                errors.Add($"{key}:GrpcCluster names cluster '{grpc}', which is not defined under ReverseProxy:Clusters.");
            }

            if (model.Rewrite is { } rewrite && string.IsNullOrWhiteSpace(rewrite))
            {
                errors.Add($"{key}:Rewrite must be a model name, not empty (leave it out to send '{name}').");
            }

            for (var i = 0; i < model.Aliases.Count; i++)
            {
                var alias = model.Aliases[i];
                if (string.IsNullOrWhiteSpace(alias))
                {
                    errors.Add($"{key}:Aliases:{i} must be a name, not empty.");
                }
                else if (!names.TryAdd(alias, $"{key}:Aliases:{i}"))
                {
                    errors.Add($"{key}:Aliases:{i}: '{alias}' is already the name of {names[alias]}; each model name and alias must be unique.");
                }
                else if (!folded.TryAdd(alias, $"{key}:Aliases:{i}"))
                {
                    // Model names are matched exactly; two that differ only in case are almost always one model written
                    // two ways (stranger review, issue 14).
                    errors.Add($"{key}:Aliases:{i}: '{alias}' differs only in case from {folded[alias]}; model names and aliases must differ by more than case.");
                }
            }

            for (var i = 0; i < model.Fallbacks.Count; i++)
            {
                var fallback = model.Fallbacks[i];
                if (!models.ContainsKey(fallback))
                {
                    errors.Add($"{key}:Fallbacks:{i} names model '{fallback}', which is not defined under {ModelOptions.Section} (fallbacks name models, not aliases).");
                }
                else if (string.Equals(fallback, name, StringComparison.Ordinal))
                {
                    errors.Add($"{key}:Fallbacks:{i}: a model cannot be its own fallback.");
                }
            }
        }
    }

    /// <summary>
    /// Model keys that differ only in case between configuration layers (<c>Gateway:Models:Llama</c> in a file,
    /// <c>Gateway__Models__llama__...</c> in the environment): the configuration merges them into one model silently
    /// (its keys are case-insensitive), so the settings of one layer land on the other's model. Refused, naming both.
    /// </summary>
    private static void CaseCollisions(IConfigurationRoot root, List<string> errors)
    {
        var seen = new Dictionary<string, (string Name, string Layer)>(StringComparer.OrdinalIgnoreCase);
        var reported = new HashSet<string>(StringComparer.Ordinal);
        foreach (var provider in root.Providers)
        {
            foreach (var name in provider.GetChildKeys([], ModelOptions.Section).Distinct(StringComparer.Ordinal))
            {
                if (!seen.TryGetValue(name, out var first))
                {
                    seen[name] = (name, provider.ToString() ?? provider.GetType().Name);
                }
                else if (!string.Equals(first.Name, name, StringComparison.Ordinal) && reported.Add($"{first.Name}\n{name}"))
                {
                    errors.Add($"{ModelOptions.Section}:{first.Name} ({first.Layer}) and {ModelOptions.Section}:{name} ({provider}) differ only in case: the configuration would merge them into one model. Spell the model the same in every layer, or give one an alias.");
                }
            }
        }
    }
}

using Gateway.Configuration;

namespace Gateway.Routing;

/// <summary>The rules of <c>Gateway:Models</c>, run at start-up and on every reload candidate; each message names its key.</summary>
internal static class ModelsValidator
{
    public static void Validate(ConfigMap<ModelOptions> models, IReadOnlySet<string> clusterIds, List<string> errors)
    {
        var names = new Dictionary<string, string>(StringComparer.Ordinal); // a name or alias → the key that claims it
        foreach (var name in models.Keys)
        {
            names[name] = $"{ModelOptions.Section}:{name}";
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
}

using Gateway.Configuration;

namespace Gateway.Routing;

/// <summary>
/// The configured models (<c>Gateway:Models</c>) compiled for lookup by name or alias, rebuilt when a reload changes
/// them (the gate's validated snapshot is read on each lookup; compiling happens once per change).
/// </summary>
internal sealed class ModelCatalog(ConfigurationGate gate)
{
    private Compiled _compiled = Compiled.Empty;

    /// <summary>Whether any model is configured (then routes route by model).</summary>
    public bool IsEnabled => Current.Models.Count > 0;

    /// <summary>The configured models, in configuration order.</summary>
    public IReadOnlyList<ModelRoute> Models => Current.Models;

    /// <summary>Characters of a client's model name an error message repeats (<see cref="Echo"/>).</summary>
    public const int MaxEchoChars = 256;

    /// <summary>
    /// A client's model name as an error message repeats it: at most <see cref="MaxEchoChars"/> characters (a cut name
    /// ends with "…", not inside a surrogate pair), so a 30 KB name makes neither a 30 KB answer nor a gRPC
    /// <c>grpc-message</c> trailer too large to send.
    /// </summary>
    public static string Echo(string name)
    {
        if (name.Length <= MaxEchoChars)
        {
            return name;
        }

        var cut = char.IsHighSurrogate(name[MaxEchoChars - 1]) ? MaxEchoChars - 1 : MaxEchoChars;
        return string.Concat(name.AsSpan(0, cut), "…");
    }

    /// <summary>The model named <paramref name="nameOrAlias"/> (exact, case-sensitive as model servers are), or null.</summary>
    public ModelRoute? Find(string nameOrAlias) => Current.ByName.GetValueOrDefault(nameOrAlias);

    /// <summary>
    /// Whether <paramref name="name"/> is a model name this gateway knows: a configured name, an alias, or a
    /// <c>Rewrite</c> (the name a backend knows the model by). A bounded set, so a backend's answer naming one of them
    /// can be a metric's tag value.
    /// </summary>
    public bool IsKnownName(string name) => Current.Known.Contains(name);

    /// <summary>The tag value of a request's model in metrics: a configured name, <c>(none)</c> or <c>(unknown)</c> (a bounded set).</summary>
    public static string Tag(ModelRoute? model, string? requested) => model?.Name ?? (requested is null ? "(none)" : "(unknown)");

    private Compiled Current
    {
        get
        {
            var models = gate.Current.Models;
            var compiled = _compiled;
            if (!ReferenceEquals(compiled.Source, models))
            {
                compiled = Compiled.From(models);
                _compiled = compiled;
            }

            return compiled;
        }
    }

    private sealed class Compiled(ConfigMap<ModelOptions>? source, List<ModelRoute> models, Dictionary<string, ModelRoute> byName)
    {
        public static readonly Compiled Empty = new(null, [], []);

        public HashSet<string> Known { get; } = KnownNames(models, byName);

        public ConfigMap<ModelOptions>? Source { get; } = source;

        public List<ModelRoute> Models { get; } = models;

        public Dictionary<string, ModelRoute> ByName { get; } = byName;

        public static Compiled From(ConfigMap<ModelOptions> options)
        {
            var models = new List<ModelRoute>(options.Count);
            var byName = new Dictionary<string, ModelRoute>(StringComparer.Ordinal);
            foreach (var (name, o) in options)
            {
                var model = new ModelRoute(name, o);
                models.Add(model);
                byName[name] = model;
                foreach (var alias in o.Aliases)
                {
                    byName.TryAdd(alias, model);
                }
            }

            foreach (var model in models)
            {
                model.Resolve(byName);
            }

            return new Compiled(options, models, byName);
        }

        private static HashSet<string> KnownNames(List<ModelRoute> models, Dictionary<string, ModelRoute> byName)
        {
            var known = new HashSet<string>(byName.Keys, StringComparer.Ordinal);
            foreach (var model in models)
            {
                known.Add(model.BackendName);
            }

            return known;
        }
    }
}

/// <summary>One configured model: its name, clusters, the name the backend knows it by, and its fallbacks.</summary>
internal sealed class ModelRoute(string name, ModelOptions options)
{
    private ModelRoute[] _fallbacks = [];

    /// <summary>The configured name (the key under <c>Gateway:Models</c>).</summary>
    public string Name { get; } = name;

    /// <summary>The model's settings.</summary>
    public ModelOptions Options { get; } = options;

    /// <summary>The name sent to the backend: <c>Rewrite</c>, or the configured name.</summary>
    public string BackendName => Options.Rewrite ?? Name;

    /// <summary>The fallback models, in order.</summary>
    public IReadOnlyList<ModelRoute> Fallbacks => _fallbacks;

    /// <summary>The cluster serving this model for a request of the given kind; null: the route's own cluster.</summary>
    public string? ClusterFor(bool grpc) => grpc ? Options.GrpcCluster : Options.Cluster;

    internal void Resolve(Dictionary<string, ModelRoute> byName)
    {
        var list = new List<ModelRoute>(Options.Fallbacks.Count);
        foreach (var f in Options.Fallbacks)
        {
            if (byName.TryGetValue(f, out var model) && model != this)
            {
                list.Add(model);
            }
        }

        _fallbacks = [.. list];
    }
}

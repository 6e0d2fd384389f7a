using Microsoft.Extensions.Primitives;

namespace Gateway.Configuration;

/// <summary>
/// The configuration in force after start-up: one validated snapshot, which is what reloads read. When the
/// configuration files change, the candidate is validated whole with the start-up rules
/// (<see cref="StartupValidation.ValidateReload"/>); only a valid one replaces the snapshot, first in shaping (so that
/// routes may name the policies the same edit adds) and then in YARP, which reads its routes and clusters from
/// <see cref="Configuration"/>. A candidate that does not validate is refused, logged once with every key at fault,
/// and every part keeps the last good configuration; restoring a good file applies it in one step.
/// </summary>
internal sealed partial class ConfigurationGate : IDisposable
{
    private readonly IConfiguration _source;
    private readonly SnapshotProvider _snapshot;
    private readonly IDisposable _reload;
    private readonly Lock _lock = new();
    private readonly List<Action<Shaping.ShapingOptions>> _apply = [];
    private Dictionary<string, string?>? _refused;
    private ILogger? _logger;

    /// <param name="source">The application's configuration, already validated at start-up.</param>
    public ConfigurationGate(IConfiguration source)
    {
        _source = source;
        _snapshot = new SnapshotProvider(Copy(source));
        Configuration = new ConfigurationRoot([_snapshot]);
        _reload = ChangeToken.OnChange(source.GetReloadToken, Reload);
    }

    /// <summary>The last good configuration; its reload token fires once a validated change is in force in shaping.</summary>
    public IConfiguration Configuration { get; }

    /// <summary>Configuration changes applied, and refused because they did not validate.</summary>
    public int Applied { get; private set; }

    /// <inheritdoc cref="Applied"/>
    public int Refused { get; private set; }

    /// <summary>Registers what applies a validated shaping configuration; it runs before YARP sees the change.</summary>
    public void OnApply(Action<Shaping.ShapingOptions> apply)
    {
        lock (_lock)
        {
            _apply.Add(apply);
        }
    }

    /// <summary>
    /// Checks candidates' routes and clusters with YARP's own validator too (transforms, load-balancing, health and
    /// affinity policy names, match patterns: what YARP would refuse after shaping had taken the change). A route or
    /// cluster the configuration binder cannot turn into YARP's types is left to YARP, as before.
    /// </summary>
    public void AttachValidator(Yarp.ReverseProxy.Configuration.IConfigValidator validator) => _validator = validator;

    private Yarp.ReverseProxy.Configuration.IConfigValidator? _validator;

    /// <summary>YARP's validator's objections to the candidate's routes and clusters, each naming its key.</summary>
    private void ValidateWithYarp(ConfigurationRoot candidate, List<string> errors)
    {
        if (_validator is not { } validator)
        {
            return;
        }

        Check<Yarp.ReverseProxy.Configuration.RouteConfig>(candidate, "Routes", errors, (route, id) => validator.ValidateRouteAsync(route with { RouteId = id }));
        Check<Yarp.ReverseProxy.Configuration.ClusterConfig>(candidate, "Clusters", errors, (cluster, id) => validator.ValidateClusterAsync(cluster with { ClusterId = id }));
    }

    /// <summary>Binds each entry of <c>ReverseProxy:{section}</c> to YARP's type and adds the validator's objections, each naming its key.</summary>
    private static void Check<T>(ConfigurationRoot candidate, string section, List<string> errors, Func<T, string, ValueTask<IList<Exception>>> validate)
        where T : class
    {
        foreach (var entry in candidate.GetSection($"ReverseProxy:{section}").GetChildren())
        {
            T? config;
            try
            {
                config = entry.Get<T>();
            }
            catch (InvalidOperationException)
            {
                continue; // not bindable here: YARP's own loader reads it
            }

            if (config is not null)
            {
                foreach (var error in validate(config, entry.Key).AsTask().GetAwaiter().GetResult())
                {
                    errors.Add($"ReverseProxy:{section}:{entry.Key}: {error.Message}");
                }
            }
        }
    }

    /// <summary>Logs refusals (of this gate and of the guarded JSON files) with <paramref name="loggers"/>.</summary>
    public void AttachLogger(ILoggerFactory loggers)
    {
        _logger = loggers.CreateLogger<ConfigurationGate>();
        GuardedJsonFile.AttachLogger(_source, _logger);
    }

    private void Reload()
    {
        lock (_lock)
        {
            var candidate = Copy(_source);
            if (Same(candidate, _snapshot.Current) || (_refused is not null && Same(candidate, _refused)))
            {
                return; // nothing new: a file that did not parse (its last good keys stay), or the same edit signalled twice
            }

            var errors = new List<string>();

            // A configuration file that is gone (deleted, or an editor's delete-and-recreate caught half way) is not a
            // configuration without that file's settings: .NET drops its keys, which would apply "no policies".
            foreach (var file in (_source as IConfigurationRoot)?.Providers.OfType<GuardedJsonConfigurationProvider>() ?? [])
            {
                if (file.ExistedAtStart && !File.Exists(file.FilePath))
                {
                    errors.Add($"'{file.FilePath}' is missing: restore it (its last good settings stay in force meanwhile).");
                }
            }

            var candidateRoot = new ConfigurationRoot([new SnapshotProvider(candidate)]);
            var shaping = errors.Count > 0 ? new Shaping.ShapingOptions() : StartupValidation.ValidateReload(candidateRoot, errors);
            if (errors.Count == 0)
            {
                ValidateWithYarp(candidateRoot, errors);
            }

            if (errors.Count > 0)
            {
                _refused = candidate;
                Refused++;
                if (_logger is not null)
                {
                    Log.ReloadRefused(_logger, errors.Count, string.Join(" ", errors));
                }

                return;
            }

            _refused = null;
            foreach (var apply in _apply)
            {
                apply(shaping);
            }

            Applied++;
            _snapshot.Replace(candidate); // YARP reloads its routes and clusters from here
        }
    }

    private static Dictionary<string, string?> Copy(IConfiguration configuration) =>
        configuration.AsEnumerable().Where(static p => p.Value is not null).ToDictionary(StringComparer.OrdinalIgnoreCase);

    private static bool Same(Dictionary<string, string?> a, IDictionary<string, string?> b) =>
        a.Count == b.Count && a.All(p => b.TryGetValue(p.Key, out var v) && string.Equals(v, p.Value, StringComparison.Ordinal));

    public void Dispose() => _reload.Dispose();

    /// <summary>Key-value pairs replaced as a whole.</summary>
    private sealed class SnapshotProvider : ConfigurationProvider
    {
        public SnapshotProvider(Dictionary<string, string?> data) => Data = data;

        public IDictionary<string, string?> Current => Data;

        public void Replace(Dictionary<string, string?> data)
        {
            Data = data;
            OnReload();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1102, Level = LogLevel.Error, Message = "Configuration reload refused, the last good configuration stays in force (shaping, routes, clusters); {Count} problem(s): {Errors}")]
        public static partial void ReloadRefused(ILogger logger, int count, string errors);
    }
}

using Microsoft.Extensions.Primitives;

namespace Gateway.Configuration;

/// <summary>
/// The configuration in force after start-up: one validated snapshot, which is what reloads read. When the
/// configuration files change, the candidate is validated whole by <see cref="ConfigurationValidator"/> (the check that
/// ran at start-up); only a valid one replaces the snapshot, first in shaping (so that routes may name the policies the
/// same edit adds) and then in YARP, which reads its routes and clusters from <see cref="Configuration"/> and runs the
/// same route and cluster rules again. A candidate that does not validate is refused, logged once with every key at
/// fault, and every part keeps the last good configuration; restoring a good file applies it in one step. A reload
/// never ends in an exception: whatever goes wrong is a refusal.
/// </summary>
internal sealed partial class ConfigurationGate : Routing.IProxyCandidateSource, IDisposable
{
    private readonly IConfiguration _source;
    private readonly SnapshotProvider _snapshot;
    private readonly IDisposable _reload;
    private readonly Lock _lock = new();
    private readonly List<Action<GatewayOptions>> _apply = [];
    private Dictionary<string, string?>? _refused;
    private ILogger? _logger;
    private Routing.ProxyCandidate _candidate;

    /// <param name="source">The application's configuration, already validated at start-up.</param>
    /// <param name="current">What the start-up validation bound from <paramref name="source"/>.</param>
    public ConfigurationGate(IConfiguration source, GatewayOptions current)
    {
        _source = source;
        _snapshot = new SnapshotProvider(Copy(source));
        Configuration = new ConfigurationRoot([_snapshot]);
        Current = current;
        _candidate = new Routing.ProxyCandidate(current.Shaping, Routing.ProxyCandidate.ClusterIdsOf(Configuration));
        _reload = ChangeToken.OnChange(source.GetReloadToken, Reload);
    }

    /// <summary>The last good configuration; its reload token fires once a validated change is in force in shaping.</summary>
    public IConfiguration Configuration { get; }

    /// <summary>The options of <see cref="Configuration"/>.</summary>
    public GatewayOptions Current { get; private set; }

    /// <summary>What YARP's own validation of the configuration in force checks routes against.</summary>
    Routing.ProxyCandidate Routing.IProxyCandidateSource.Candidate => _candidate;

    /// <summary>Configuration changes applied, and refused because they did not validate.</summary>
    public int Applied { get; private set; }

    /// <inheritdoc cref="Applied"/>
    public int Refused { get; private set; }

    /// <summary>Registers what applies a validated configuration (shaping, tenants' limits); it runs before YARP sees the change.</summary>
    public void OnApply(Action<GatewayOptions> apply)
    {
        lock (_lock)
        {
            _apply.Add(apply);
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

            try
            {
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
                var result = errors.Count > 0 ? null : ConfigurationValidator.Validate(candidateRoot, startup: false);
                errors.AddRange(result?.Errors ?? []);
                if (errors.Count > 0 || result is null)
                {
                    Refuse(candidate, errors);
                    return;
                }

                Apply(candidate, candidateRoot, result.Options);
            }
            catch (Exception ex)
            {
                // A bug, not a configuration the user can fix by reading the message; still never a crash of the watcher's thread.
                Refuse(candidate, [$"the configuration could not be applied: {ex.GetType().Name}: {ex.Message}"]);
            }
        }
    }

    private void Refuse(Dictionary<string, string?> candidate, List<string> errors)
    {
        _refused = candidate;
        Refused++;
        if (_logger is not null)
        {
            Log.ReloadRefused(_logger, errors.Count, string.Join(" ", errors));
        }
    }

    private void Apply(Dictionary<string, string?> candidate, ConfigurationRoot candidateRoot, GatewayOptions options)
    {
        _refused = null;
        foreach (var apply in _apply)
        {
            apply(options);
        }

        if (_logger is not null && GatewayOptions.StartupOnlyChanges(Current, options).ToList() is { Count: > 0 } ignored)
        {
            Log.RestartNeeded(_logger, string.Join(", ", ignored));
        }

        Current = options;
        _candidate = new Routing.ProxyCandidate(options.Shaping, Routing.ProxyCandidate.ClusterIdsOf(candidateRoot));
        Applied++;
        _snapshot.Replace(candidate); // YARP reloads its routes and clusters from here
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

        [LoggerMessage(EventId = 1103, Level = LogLevel.Warning, Message = "Configuration reloaded; {Sections} changed too, which is read only at start-up: restart the gateway to apply it.")]
        public static partial void RestartNeeded(ILogger logger, string sections);
    }
}

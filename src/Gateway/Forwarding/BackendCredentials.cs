using System.Collections.Concurrent;
using Contracts.Wire;
using Gateway.Exchange;
using Gateway.Tenants;
using Yarp.ReverseProxy.Model;
using Yarp.ReverseProxy.Transforms;
using Yarp.ReverseProxy.Transforms.Builder;

namespace Gateway.Forwarding;

/// <summary>
/// A cluster's own credential for its backends, <c>ReverseProxy:Clusters:{id}:Metadata:BackendApiKey</c>: <c>env:NAME</c>
/// (an environment variable of the gateway) or <c>file:PATH</c> (a file's content, trimmed, one line; re-read when a
/// file-system watcher sees it change, and at least every <see cref="FileRecheck"/>), never a literal in the
/// configuration. Sent as <c>Authorization: Bearer</c>.
/// </summary>
/// <remarks>
/// Stranger review B4: while a credential that was read once cannot be read again (a file emptied, deleted, unreadable
/// or of several lines, as during a secret's rotation), the last good value stays in force, and each failed re-read is
/// counted (<c>gateway_auth_backend_key_errors_total</c>) and logged (event 6201, at most once a minute per
/// credential, naming the file and the reason, never the key). Start-up refuses a credential that cannot be read
/// (<see cref="Routing.ProxyRules"/>).
/// </remarks>
internal sealed partial class BackendCredentials(TimeProvider time, AuthMetrics metrics, ILogger<BackendCredentials> logger) : IDisposable
{
    /// <summary>The cluster metadata key.</summary>
    public const string MetadataKey = "BackendApiKey";

    /// <summary>How often a <c>file:</c> credential's file is re-read when no change was seen.</summary>
    public static readonly TimeSpan FileRecheck = TimeSpan.FromSeconds(30);

    private readonly ConcurrentDictionary<string, Entry> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, FileSystemWatcher?> _watchers = new(StringComparer.Ordinal);
    private readonly Telemetry.LogThrottle _throttle = new(time, TimeSpan.FromMinutes(1));

    /// <summary>Whether <paramref name="spec"/> has the form <c>env:NAME</c> or <c>file:PATH</c>.</summary>
    public static bool IsReference(string? spec) =>
        spec is not null && ((spec.StartsWith("env:", StringComparison.Ordinal) && spec.Length > 4) || (spec.StartsWith("file:", StringComparison.Ordinal) && spec.Length > 5));

    /// <summary>Reads the credential <paramref name="spec"/> names; null with <paramref name="error"/> (never quoting the value) when it cannot, or it is empty or of several lines.</summary>
    public static string? Read(string spec, out string? error)
    {
        error = null;
        string? value;
        string where;
        if (spec.StartsWith("env:", StringComparison.Ordinal))
        {
            where = $"the environment variable '{spec[4..]}'";
            value = Environment.GetEnvironmentVariable(spec[4..])?.Trim();
        }
        else
        {
            where = $"the file '{spec[5..]}'";
            try
            {
                value = File.ReadAllText(spec[5..]).Trim();
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
            {
                error = $"{where} cannot be read: {ex.Message}";
                return null;
            }
        }

        if (string.IsNullOrEmpty(value))
        {
            error = $"{where} is not set or empty";
            return null;
        }

        if (value.AsSpan().IndexOfAny('\r', '\n') >= 0)
        {
            error = $"{where} holds more than one line (a key is one line)";
            return null;
        }

        return value;
    }

    /// <summary>The <c>Authorization</c> value for <paramref name="spec"/> (cached; the last good one while it cannot be read), or null when it was never read.</summary>
    public string? AuthorizationFor(string spec)
    {
        var now = time.GetTimestamp();
        if (_cache.TryGetValue(spec, out var entry) && (entry.Env || (!entry.Stale && time.GetElapsedTime(entry.Checked, now) < FileRecheck)))
        {
            return entry.Value;
        }

        var isEnv = spec.StartsWith("env:", StringComparison.Ordinal);
        if (!isEnv)
        {
            Watch(spec);
        }

        var value = Read(spec, out var error);
        if (value is null)
        {
            var kept = entry?.Value;
            metrics.BackendKeyError();
            if (_throttle.ShouldLog(spec, out var suppressed))
            {
                Log.BackendKeyUnreadable(logger, error!, kept is not null, suppressed);
            }

            _cache[spec] = new Entry(kept, false, now, false);
            return kept;
        }

        var fresh = new Entry("Bearer " + value, isEnv, now, false);
        _cache[spec] = fresh;
        return fresh.Value;
    }

    private void Watch(string spec)
    {
        if (_watchers.ContainsKey(spec))
        {
            return;
        }

        // Null when it cannot be watched: the 30 s re-read still applies.
        _watchers.GetOrAdd(spec, s => Hosting.FileWatch.TryWatch(s[5..], deletionsAndAttributes: true, () => MarkStale(s)));
    }

    private void MarkStale(string spec)
    {
        if (_cache.TryGetValue(spec, out var entry))
        {
            _cache[spec] = entry with { Stale = true };
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var watcher in _watchers.Values)
        {
            watcher?.Dispose();
        }
    }

    private sealed record Entry(string? Value, bool Env, long Checked, bool Stale);

    private static partial class Log
    {
        [LoggerMessage(EventId = 6201, Level = LogLevel.Warning, Message = "A cluster's backend credential (Metadata:BackendApiKey) cannot be re-read: {Error}; the last good key is {Kept} ({Suppressed} more since the last line).")]
        private static partial void BackendKeyUnreadable(ILogger logger, string error, string kept, long suppressed);

        public static void BackendKeyUnreadable(ILogger logger, string error, bool kept, long suppressed) =>
            BackendKeyUnreadable(logger, error, kept ? "kept" : "missing (none was ever read)", suppressed);
    }
}

/// <summary>
/// The request transform of every route that decides which credentials reach the backend:
/// <list type="bullet">
/// <item>with authentication on (<c>Gateway:Auth:Mode</c> not <c>None</c>), the caller's <c>Authorization</c>,
/// <c>x-api-key</c> and <c>api-key</c> (gRPC metadata <c>authorization</c> is the same header) are removed, so is any
/// <c>x-gateway-tenant</c> the client sent, and the authenticated tenant's name is sent as <c>x-gateway-tenant</c>;</item>
/// <item>the cluster the exchange goes to (after model routing) with <c>Metadata:BackendApiKey</c> gets its own
/// credential as <c>Authorization: Bearer</c>, in place of whatever the caller sent.</item>
/// </list>
/// With authentication off and no backend credential, one comparison and one metadata lookup.
/// </summary>
internal sealed class BackendCredentialsTransform(TenantDirectory directory, BackendCredentials credentials) : ITransformProvider
{
    /// <inheritdoc/>
    public void ValidateRoute(TransformRouteValidationContext context)
    {
    }

    /// <inheritdoc/>
    public void ValidateCluster(TransformClusterValidationContext context)
    {
    }

    /// <inheritdoc/>
    public void Apply(TransformBuilderContext context) => context.AddRequestTransform(ApplyAsync);

    private ValueTask ApplyAsync(RequestTransformContext context)
    {
        var headers = context.ProxyRequest.Headers;
        if (directory.Current.Mode != AuthMode.None)
        {
            headers.Remove("Authorization");
            headers.Remove(GatewayHeaders.ApiKey);
            headers.Remove("api-key");
            headers.Remove(GatewayHeaders.Tenant);
            headers.Remove(Hosting.Warmup.MarkerHeader);
            RemoveUnderscoreVariants(context.HttpContext.Request.Headers, headers);
            if (context.HttpContext.GetExchange()?.Caller is { } caller)
            {
                headers.TryAddWithoutValidation(GatewayHeaders.Tenant, caller.Name);
            }
        }

        var cluster = context.HttpContext.Features.Get<IReverseProxyFeature>()?.Cluster?.Config;
        if (cluster?.Metadata is { } metadata && metadata.TryGetValue(BackendCredentials.MetadataKey, out var spec) && spec is not null
            && credentials.AuthorizationFor(spec) is { } authorization)
        {
            headers.Remove("Authorization");
            headers.TryAddWithoutValidation("Authorization", authorization);
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// Stranger review R8: removes <c>x_gateway_tenant</c>, <c>x_api_key</c>, <c>api_key</c> (any mix of <c>_</c> and
    /// <c>-</c>) sent by the client: servers that map <c>_</c> to <c>-</c> (CGI-style, some Python stacks) would read
    /// them as the gateway's own <c>x-gateway-tenant</c> or a credential.
    /// </summary>
    private static void RemoveUnderscoreVariants(IHeaderDictionary incoming, System.Net.Http.Headers.HttpRequestHeaders outgoing)
    {
        foreach (var header in incoming)
        {
            var name = header.Key;
            if (name.Contains('_', StringComparison.Ordinal)
                && (SameIgnoringUnderscore(name, GatewayHeaders.Tenant) || SameIgnoringUnderscore(name, GatewayHeaders.ApiKey) || SameIgnoringUnderscore(name, "api-key")))
            {
                outgoing.Remove(name);
            }
        }
    }

    private static bool SameIgnoringUnderscore(string name, string dashed)
    {
        if (name.Length != dashed.Length)
        {
            return false;
        }

        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i] == '_' ? '-' : char.ToLowerInvariant(name[i]);
            if (c != dashed[i])
            {
                return false;
            }
        }

        return true;
    }
}

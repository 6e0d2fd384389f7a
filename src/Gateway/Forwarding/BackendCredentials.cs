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
/// (an environment variable of the gateway) or <c>file:PATH</c> (a file's content, trimmed; re-read when it changes, at
/// most every <see cref="FileRecheck"/>), never a literal in the configuration. Sent as <c>Authorization: Bearer</c>.
/// </summary>
internal sealed class BackendCredentials(TimeProvider time)
{
    /// <summary>The cluster metadata key.</summary>
    public const string MetadataKey = "BackendApiKey";

    /// <summary>How often a <c>file:</c> credential's file is checked for a change.</summary>
    public static readonly TimeSpan FileRecheck = TimeSpan.FromSeconds(30);

    private readonly ConcurrentDictionary<string, Entry> _cache = new(StringComparer.Ordinal);

    /// <summary>Whether <paramref name="spec"/> has the form <c>env:NAME</c> or <c>file:PATH</c>.</summary>
    public static bool IsReference(string? spec) =>
        spec is not null && ((spec.StartsWith("env:", StringComparison.Ordinal) && spec.Length > 4) || (spec.StartsWith("file:", StringComparison.Ordinal) && spec.Length > 5));

    /// <summary>Reads the credential <paramref name="spec"/> names; null with <paramref name="error"/> when it cannot.</summary>
    public static string? Read(string spec, out string? error)
    {
        error = null;
        if (spec.StartsWith("env:", StringComparison.Ordinal))
        {
            var value = Environment.GetEnvironmentVariable(spec[4..]);
            if (string.IsNullOrWhiteSpace(value))
            {
                error = $"the environment variable '{spec[4..]}' is not set or empty";
                return null;
            }

            return value.Trim();
        }

        try
        {
            var value = File.ReadAllText(spec[5..]).Trim();
            if (value.Length == 0)
            {
                error = $"the file '{spec[5..]}' is empty";
                return null;
            }

            return value;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            error = $"the file '{spec[5..]}' cannot be read: {ex.Message}";
            return null;
        }
    }

    /// <summary>The <c>Authorization</c> value for <paramref name="spec"/> (cached), or null when it cannot be read now.</summary>
    public string? AuthorizationFor(string spec)
    {
        var now = time.GetTimestamp();
        if (_cache.TryGetValue(spec, out var entry) && (entry.Env || time.GetElapsedTime(entry.Checked, now) < FileRecheck))
        {
            return entry.Value;
        }

        var value = Read(spec, out _);
        var fresh = new Entry(value is null ? null : "Bearer " + value, spec.StartsWith("env:", StringComparison.Ordinal) && value is not null, now);
        _cache[spec] = fresh;
        return fresh.Value;
    }

    private sealed record Entry(string? Value, bool Env, long Checked);
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
}

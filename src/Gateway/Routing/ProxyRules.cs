using Gateway.Configuration;
using Gateway.Shaping;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Configuration.ClusterValidators;
using Yarp.ReverseProxy.Configuration.RouteValidators;

namespace Gateway.Routing;

/// <summary>
/// What a route or cluster rule checks against besides the route or cluster itself: the shaping policies and the
/// cluster ids of the same configuration (a candidate being validated, or the one in force when YARP re-validates what
/// the gate applied), so that an edit may add a policy and the route naming it together.
/// </summary>
internal sealed record ProxyCandidate(ShapingOptions Shaping, IReadOnlySet<string> ClusterIds)
{
    /// <summary>The cluster ids defined under <c>ReverseProxy:Clusters</c> of <paramref name="configuration"/>.</summary>
    public static IReadOnlySet<string> ClusterIdsOf(IConfiguration configuration) =>
        configuration.GetSection("ReverseProxy:Clusters").GetChildren().Select(static c => c.Key).ToHashSet(StringComparer.OrdinalIgnoreCase);
}

/// <summary>Gives the rules their <see cref="ProxyCandidate"/>.</summary>
internal interface IProxyCandidateSource
{
    ProxyCandidate Candidate { get; }
}

/// <summary>The gateway's route and cluster rules, registered with YARP so that YARP's own <c>IConfigValidator</c> runs them.</summary>
internal static class ProxyRules
{
    /// <summary>
    /// Adds every route rule and cluster rule, and the gateway's load-balancing policies (so that YARP's validator knows
    /// their names: <c>MostFreeCapacity</c>, <c>InferenceAware</c>; the latter's scraper and metrics are added by the
    /// gateway's host, <see cref="InferenceAware.InferenceAwareServiceCollectionExtensions"/>). <see cref="ConfigurationValidator"/> runs the same registration on every candidate.
    /// </summary>
    public static IReverseProxyBuilder AddGatewayProxyRules(this IReverseProxyBuilder builder)
    {
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IRouteValidator, RouteClusterRule>());
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IRouteValidator, RouteMatchRule>());
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IRouteValidator, RouteListenersRule>());
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IRouteValidator, RoutePoliciesRule>());
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IRouteValidator, RouteTimeoutRule>());
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IClusterValidator, DestinationsRule>());
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IClusterValidator, ClusterPoolRule>());
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IClusterValidator, BackendApiKeyRule>());
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IClusterValidator, InferenceAware.InferenceAwareRule>());
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<Yarp.ReverseProxy.LoadBalancing.ILoadBalancingPolicy, Shaping.Admission.MostFreeCapacityPolicy>());
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.TryAddSingleton<InferenceAware.ReplicaBoard>();
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<Yarp.ReverseProxy.LoadBalancing.ILoadBalancingPolicy, InferenceAware.InferenceAwarePolicy>());
        return builder;
    }

    /// <summary>Longest route timeout or cluster duration: <see cref="ConfigRanges.MaxDuration"/>.</summary>
    public static readonly TimeSpan MaxDuration = TimeSpan.Parse(ConfigRanges.MaxDuration, System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>A route names a cluster, and that cluster is defined.</summary>
internal sealed class RouteClusterRule(IProxyCandidateSource source) : IRouteValidator
{
    public ValueTask ValidateAsync(RouteConfig route, IList<Exception> errors)
    {
        if (string.IsNullOrEmpty(route.ClusterId))
        {
            errors.Add(new ArgumentException($"ReverseProxy:Routes:{route.RouteId}:ClusterId is missing: a route must name the cluster it forwards to."));
        }
        else if (!source.Candidate.ClusterIds.Contains(route.ClusterId))
        {
            errors.Add(new ArgumentException($"ReverseProxy:Routes:{route.RouteId}:ClusterId names cluster '{route.ClusterId}', which is not defined under ReverseProxy:Clusters."));
        }

        return ValueTask.CompletedTask;
    }
}

/// <summary>A route has a <c>Match</c>.</summary>
internal sealed class RouteMatchRule : IRouteValidator
{
    public ValueTask ValidateAsync(RouteConfig route, IList<Exception> errors)
    {
        if (route.Match is null || (route.Match.Path is null && route.Match.Hosts is null or { Count: 0 } && route.Match.Methods is null
            && route.Match.Headers is null && route.Match.QueryParameters is null))
        {
            errors.Add(new ArgumentException($"ReverseProxy:Routes:{route.RouteId}:Match is missing: a route needs at least a Path."));
        }

        return ValueTask.CompletedTask;
    }
}

/// <summary>A route's <c>Metadata:Listeners</c> names listeners that can carry it.</summary>
internal sealed class RouteListenersRule : IRouteValidator
{
    public ValueTask ValidateAsync(RouteConfig route, IList<Exception> errors)
    {
        if (route.Metadata is not null && route.Metadata.TryGetValue(RouteListeners.MetadataKey, out var listeners)
            && !RouteListeners.TryParse(listeners, out _, out var error))
        {
            errors.Add(new ArgumentException($"ReverseProxy:Routes:{route.RouteId}:Metadata:{RouteListeners.MetadataKey} is invalid ('{listeners}'): {error}."));
        }

        return ValueTask.CompletedTask;
    }
}

/// <summary>Every policy a route's <c>Metadata:Policies</c> names is defined under <c>Gateway:Shaping:Policies</c>.</summary>
internal sealed class RoutePoliciesRule(IProxyCandidateSource source) : IRouteValidator
{
    public ValueTask ValidateAsync(RouteConfig route, IList<Exception> errors)
    {
        var policies = source.Candidate.Shaping.Policies;
        foreach (var name in ShapingRuntime.PolicyNames(route))
        {
            if (!policies.ContainsKey(name))
            {
                errors.Add(new ArgumentException($"ReverseProxy:Routes:{route.RouteId}:Metadata:{ShapingRuntime.PoliciesMetadataKey} names policy '{name}', which is not defined under {ShapingOptions.Section}:Policies."));
            }
        }

        return ValueTask.CompletedTask;
    }
}

/// <summary>A route's <c>Timeout</c> is positive and at most <see cref="ConfigRanges.MaxDuration"/> (it becomes a <c>CancelAfter</c>).</summary>
internal sealed class RouteTimeoutRule : IRouteValidator
{
    public ValueTask ValidateAsync(RouteConfig route, IList<Exception> errors)
    {
        if (route.Timeout is { } timeout && (timeout <= TimeSpan.Zero || timeout > ProxyRules.MaxDuration))
        {
            errors.Add(new ArgumentException($"ReverseProxy:Routes:{route.RouteId}:Timeout must be a duration from 00:00:00.001 to {ConfigRanges.MaxDuration} (was {timeout:c})."));
        }

        return ValueTask.CompletedTask;
    }
}

/// <summary>A cluster has destinations, each with an http(s) address and a valid <c>Metadata:Capacity</c>.</summary>
internal sealed class DestinationsRule : IClusterValidator
{
    public ValueTask ValidateAsync(ClusterConfig cluster, IList<Exception> errors)
    {
        var key = $"ReverseProxy:Clusters:{cluster.ClusterId}";
        if (cluster.Destinations is null or { Count: 0 })
        {
            errors.Add(new ArgumentException($"{key}:Destinations is empty: a cluster needs at least one destination with an Address."));
            return ValueTask.CompletedTask;
        }

        foreach (var (id, destination) in cluster.Destinations)
        {
            var d = $"{key}:Destinations:{id}";
            if (!Uri.TryCreate(destination.Address, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            {
                errors.Add(new ArgumentException($"{d}:Address must be an absolute http:// or https:// URI (was '{destination.Address}')."));
            }

            if (destination.Metadata is not null && destination.Metadata.TryGetValue(Shaping.Admission.MostFreeCapacityPolicy.CapacityKey, out var capacity)
                && (!int.TryParse(capacity, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var c) || c <= 0))
            {
                errors.Add(new ArgumentException($"{d}:Metadata:{Shaping.Admission.MostFreeCapacityPolicy.CapacityKey} must be a positive whole number of concurrent sequences (was '{capacity}')."));
            }
        }

        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// A cluster's connection settings: the pool durations of <see cref="Forwarding.ClusterMetadata"/>, <c>HttpRequest:ActivityTimeout</c>
/// and <c>HttpClient:MaxConnectionsPerServer</c>, in the ranges <c>SocketsHttpHandler</c> and .NET's timers take.
/// </summary>
internal sealed class ClusterPoolRule : IClusterValidator
{
    public ValueTask ValidateAsync(ClusterConfig cluster, IList<Exception> errors)
    {
        var key = $"ReverseProxy:Clusters:{cluster.ClusterId}";
        foreach (var name in Forwarding.ClusterMetadata.Keys)
        {
            if (cluster.Metadata is not null && cluster.Metadata.TryGetValue(name, out var value)
                && (!Forwarding.ClusterMetadata.TryParseDuration(value, out var d) || (d != Timeout.InfiniteTimeSpan && d > ProxyRules.MaxDuration)))
            {
                errors.Add(new ArgumentException($"{key}:Metadata:{name} must be a positive duration up to {ConfigRanges.MaxDuration} (hh:mm:ss or seconds) (was '{value}')."));
            }
        }

        if (cluster.HttpRequest?.ActivityTimeout is { } activity && (activity <= TimeSpan.Zero || activity > ProxyRules.MaxDuration))
        {
            errors.Add(new ArgumentException($"{key}:HttpRequest:ActivityTimeout must be a duration from 00:00:00.001 to {ConfigRanges.MaxDuration} (was {activity:c})."));
        }

        if (cluster.HttpClient?.MaxConnectionsPerServer is <= 0 and var max)
        {
            errors.Add(new ArgumentException($"{key}:HttpClient:MaxConnectionsPerServer must be > 0 (was {max})."));
        }

        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// A cluster's <c>Metadata:BackendApiKey</c> (<see cref="Forwarding.BackendCredentials"/>) names where the credential is,
/// <c>env:NAME</c> or <c>file:PATH</c>, and it can be read now; a literal is refused without being quoted (a secret
/// does not belong in the configuration, and not in a log line either).
/// </summary>
internal sealed class BackendApiKeyRule : IClusterValidator
{
    public ValueTask ValidateAsync(ClusterConfig cluster, IList<Exception> errors)
    {
        if (cluster.Metadata is null || !cluster.Metadata.TryGetValue(Forwarding.BackendCredentials.MetadataKey, out var spec))
        {
            return ValueTask.CompletedTask;
        }

        var key = $"ReverseProxy:Clusters:{cluster.ClusterId}:Metadata:{Forwarding.BackendCredentials.MetadataKey}";
        if (!Forwarding.BackendCredentials.IsReference(spec))
        {
            errors.Add(new ArgumentException($"{key} must be 'env:NAME' (an environment variable) or 'file:PATH' (a file holding the key), never the key itself (the value, {spec?.Length ?? 0} characters, is not quoted here)."));
        }
        else if (Forwarding.BackendCredentials.Read(spec!, out var error) is null)
        {
            errors.Add(new ArgumentException($"{key}: {error}."));
        }

        return ValueTask.CompletedTask;
    }
}

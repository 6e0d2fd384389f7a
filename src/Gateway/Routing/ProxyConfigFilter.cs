using Gateway.Forwarding;
using Yarp.ReverseProxy.Configuration;

namespace Gateway.Routing;

/// <summary>
/// Checks what YARP itself lets through: a route that names an unknown cluster (YARP would answer 503 at run time),
/// a route's listeners, and the cluster pool settings of <see cref="ClusterMetadata"/>. At start-up a failure stops
/// the gateway; on a reload YARP keeps the last good configuration and logs the message.
/// </summary>
internal sealed class ProxyConfigFilter(Shaping.ShapingRuntime shaping) : IProxyConfigFilter
{
    /// <inheritdoc/>
    public ValueTask<ClusterConfig> ConfigureClusterAsync(ClusterConfig cluster, CancellationToken cancel)
    {
        var errors = new List<string>();
        ProxyConfigRules.ValidateClusterMetadata(cluster.ClusterId, cluster.Metadata, errors);
        foreach (var (id, destination) in cluster.Destinations ?? new Dictionary<string, DestinationConfig>())
        {
            ProxyConfigRules.ValidateDestination(cluster.ClusterId, id, destination.Address, destination.Metadata, errors);
        }

        ThrowIfAny(errors);
        return ValueTask.FromResult(cluster);
    }

    /// <inheritdoc/>
    public ValueTask<RouteConfig> ConfigureRouteAsync(RouteConfig route, ClusterConfig? cluster, CancellationToken cancel)
    {
        var errors = new List<string>();
        ProxyConfigRules.ValidateRoute(route.RouteId, route.ClusterId, clusterExists: cluster is not null, route.Metadata, errors);
        if (shaping.CheckRoute(route) is { } policyError)
        {
            errors.Add(policyError);
        }

        ThrowIfAny(errors);
        return ValueTask.FromResult(route);
    }

    private static void ThrowIfAny(List<string> errors)
    {
        if (errors.Count > 0)
        {
            throw new InvalidOperationException(string.Join(Environment.NewLine, errors));
        }
    }
}

/// <summary>Rules shared by <see cref="ProxyConfigFilter"/> and the start-up validation; each message names the full key.</summary>
internal static class ProxyConfigRules
{
    public static void ValidateRoute(string routeId, string? clusterId, bool clusterExists, IReadOnlyDictionary<string, string>? metadata, List<string> errors)
    {
        if (string.IsNullOrEmpty(clusterId))
        {
            errors.Add($"ReverseProxy:Routes:{routeId}:ClusterId is missing: a route must name the cluster it forwards to.");
        }
        else if (!clusterExists)
        {
            errors.Add($"ReverseProxy:Routes:{routeId}:ClusterId names cluster '{clusterId}', which is not defined under ReverseProxy:Clusters.");
        }

        if (metadata is not null && metadata.TryGetValue(RouteListeners.MetadataKey, out var listeners)
            && !RouteListeners.TryParse(listeners, out _, out var error))
        {
            errors.Add($"ReverseProxy:Routes:{routeId}:Metadata:{RouteListeners.MetadataKey} is invalid ('{listeners}'): {error}.");
        }
    }

    public static void ValidateDestination(string clusterId, string destinationId, string? address, IReadOnlyDictionary<string, string>? metadata, List<string> errors)
    {
        var key = $"ReverseProxy:Clusters:{clusterId}:Destinations:{destinationId}";
        if (!Uri.TryCreate(address, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            errors.Add($"{key}:Address must be an absolute http:// or https:// URI (was '{address}').");
        }

        if (metadata is not null && metadata.TryGetValue(Shaping.Admission.MostFreeCapacityPolicy.CapacityKey, out var capacity)
            && (!int.TryParse(capacity, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var c) || c <= 0))
        {
            errors.Add($"{key}:Metadata:{Shaping.Admission.MostFreeCapacityPolicy.CapacityKey} must be a positive whole number of concurrent sequences (was '{capacity}').");
        }
    }

    public static void ValidateClusterMetadata(string clusterId, IReadOnlyDictionary<string, string>? metadata, List<string> errors)
    {
        if (metadata is null)
        {
            return;
        }

        foreach (var key in ClusterMetadata.Keys)
        {
            if (metadata.TryGetValue(key, out var value) && !ClusterMetadata.TryParseDuration(value, out _))
            {
                errors.Add($"ReverseProxy:Clusters:{clusterId}:Metadata:{key} must be a positive duration (hh:mm:ss or seconds) (was '{value}').");
            }
        }
    }
}

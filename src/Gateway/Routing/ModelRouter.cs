using Gateway.Exchange;
using Gateway.Shaping;
using Gateway.Shaping.Tokens;
using Yarp.ReverseProxy;

namespace Gateway.Routing;

/// <summary>
/// Where a request for a configured model goes: the model's cluster or a fallback's (<see cref="Choose"/>), moving the
/// request there in YARP (<see cref="MoveTo"/>) and writing the name the backend knows (<see cref="Rewrite"/>). Used by
/// <see cref="ClassifyStep"/> before forwarding, and by <c>ForwardStep</c> when forwarding failed before any answer.
/// </summary>
internal sealed class ModelRouter(IProxyStateLookup proxy, ShapingRuntime shaping)
{
    /// <summary>
    /// The model and cluster to use: <paramref name="model"/>'s, or the first of its fallbacks whose cluster has a healthy
    /// destination and a closed circuit; the model's own when none has (its failure is then answered as usual).
    /// </summary>
    public (ModelRoute Model, string? ClusterId) Choose(ModelRoute model, bool grpc, string? routeCluster)
    {
        var first = (model, model.ClusterFor(grpc) ?? routeCluster);
        if (Serves(first.Item2))
        {
            return first;
        }

        foreach (var fallback in model.Fallbacks)
        {
            var clusterId = fallback.ClusterFor(grpc) ?? routeCluster;
            if (Serves(clusterId))
            {
                return (fallback, clusterId);
            }
        }

        return first;
    }

    /// <summary>Whether a cluster has a healthy destination and its circuit (if any) lets requests through.</summary>
    public bool Serves(string? clusterId)
    {
        if (clusterId is null || !proxy.TryGetCluster(clusterId, out var cluster) || !HasHealthyDestination(cluster))
        {
            return false;
        }

        return !(shaping.Current.Clusters.TryGetValue(clusterId, out var admission) && admission.Breaker is { } breaker && breaker.IsBreaking(out _));
    }

    /// <summary>
    /// Whether a destination of the cluster is not known to be unhealthy (active or passive health). Not YARP's
    /// available destinations: with its default HealthyOrPanic policy they are all of them once all are unhealthy.
    /// </summary>
    private static bool HasHealthyDestination(Yarp.ReverseProxy.Model.ClusterState cluster)
    {
        foreach (var destination in cluster.DestinationsState.AllDestinations)
        {
            if (destination.Health.Active != Yarp.ReverseProxy.Model.DestinationHealth.Unhealthy
                && destination.Health.Passive != Yarp.ReverseProxy.Model.DestinationHealth.Unhealthy)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Sends the request to <paramref name="clusterId"/> instead of the route's cluster.</summary>
    public bool MoveTo(HttpContext context, string? clusterId)
    {
        if (clusterId is null || string.Equals(context.GetReverseProxyFeature().Cluster.Config.ClusterId, clusterId, StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        if (!proxy.TryGetCluster(clusterId, out var cluster))
        {
            return false;
        }

        context.ReassignProxyRequest(cluster);
        return true;
    }

    /// <summary>Writes <paramref name="backendName"/> where the request named its model (body, <c>x-model</c>, <c>?model=</c>).</summary>
    public static void Rewrite(HttpContext context, Classification classification, string backendName, LlmRequest? llm)
    {
        var request = context.Request;
        if (request.Headers.ContainsKey("x-model"))
        {
            request.Headers["x-model"] = backendName;
        }

        if (classification.IsWebSocket && request.Query.ContainsKey("model"))
        {
            var query = QueryString.Empty;
            foreach (var (key, values) in request.Query)
            {
                foreach (var value in values)
                {
                    query = query.Add(key, key == "model" ? backendName : value ?? string.Empty);
                }
            }

            request.QueryString = query;
            return;
        }

        var body = classification.ForwardedBody ?? classification.Body;
        if (llm?.Model is null || body is not { Length: > 0 } b)
        {
            return;
        }

        var rewritten = classification.IsGrpc ? LlmRequest.GrpcWithModel(b.Span, backendName) : LlmRequest.WithModel(b.Span, backendName);
        if (rewritten is not null)
        {
            classification.ReplaceBody(rewritten);
        }
    }
}

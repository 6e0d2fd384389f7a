using Gateway.Configuration;

namespace Gateway.Routing;

/// <summary>
/// One model the gateway routes to, bound from <c>Gateway:Models:{name}</c> (the name clients use). When any model is
/// configured, every proxied route routes by the model a request names (unless its <c>Metadata:RouteByModel</c> is
/// <c>false</c>): see docs/routing.md.
/// </summary>
internal sealed record ModelOptions
{
    /// <summary>Configuration section of the models.</summary>
    public const string Section = "Gateway:Models";

    /// <summary>The YARP cluster that serves the model over HTTP, SSE and WebSocket (required; a cluster under <c>ReverseProxy:Clusters</c>).</summary>
    public string? Cluster { get; set; }

    /// <summary>The cluster for gRPC calls naming the model; default: the route's own cluster (a gRPC cluster).</summary>
    public string? GrpcCluster { get; set; }

    /// <summary>Other names clients may use for the model (each unique across all models and names).</summary>
    public ConfigList<string> Aliases { get; set; } = [];

    /// <summary>The name sent to the backend in place of the one the client used; default: the model's configured name.</summary>
    public string? Rewrite { get; set; }

    /// <summary>
    /// Models tried in order when this model's cluster has no healthy destination or its circuit is open (decided
    /// before any byte is sent), or when forwarding to it fails before the backend answered (connection refused).
    /// Never after a byte of the answer was sent.
    /// </summary>
    public ConfigList<string> Fallbacks { get; set; } = [];
}

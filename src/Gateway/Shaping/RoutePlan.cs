using Gateway.Shaping.Policies;

namespace Gateway.Shaping;

/// <summary>
/// The shaping steps that apply to one route, decided when the configuration loads (one plan per route configuration
/// and shaping configuration, cached by <see cref="ShapingState.PlanFor"/>), so that a request on a route with no
/// policies and no admission passes each step with one array-length check and no allocation.
/// </summary>
internal sealed class RoutePlan
{
    /// <summary>A route with nothing to shape.</summary>
    public static readonly RoutePlan Empty = new([], [], null);

    public RoutePlan(ShapingPolicy[] requestPolicies, ShapingPolicy[] tokenPolicies, ClusterShaping? admission)
    {
        RequestPolicies = requestPolicies;
        TokenPolicies = tokenPolicies;
        Admission = admission;
        var needsSession = false;
        foreach (var p in requestPolicies)
        {
            needsSession |= p.Partition.NeedsSession;
        }

        foreach (var p in tokenPolicies)
        {
            needsSession |= p.Partition.NeedsSession;
        }

        NeedsSession = needsSession;
    }

    /// <summary>
    /// The route's policies counted in requests (token bucket, windows, concurrency, WebSocket), in the order the route
    /// names them; applied by <see cref="RateLimitStep"/>.
    /// </summary>
    public ShapingPolicy[] RequestPolicies { get; }

    /// <summary>The route's policies counted in tokens (<c>Kind: Tokens</c>), in order; applied by <see cref="TokenStep"/>.</summary>
    public ShapingPolicy[] TokenPolicies { get; }

    /// <summary>The admission (in-flight cap, queue, breaker) of the route's cluster, or null; applied by <see cref="AdmissionStep"/>.</summary>
    public ClusterShaping? Admission { get; }

    /// <summary>Whether a policy's partition needs the session id.</summary>
    public bool NeedsSession { get; }

    /// <summary>Whether no shaping applies.</summary>
    public bool IsEmpty => RequestPolicies.Length == 0 && TokenPolicies.Length == 0 && Admission is null;
}

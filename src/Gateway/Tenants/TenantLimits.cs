using Gateway.Shaping;
using Gateway.Shaping.Policies;

namespace Gateway.Tenants;

/// <summary>
/// A tenant's quotas (<c>Gateway:Tenants:{tenant}:Limits</c>) compiled into the shaping policies of
/// <see cref="ShapingRuntime"/>, partitioned by tenant (<see cref="PartitionPart.Tenant"/>), fleet-wide in Redis when
/// <c>Gateway:Shaping:Redis</c> is configured (<c>Scope: Global</c>), in this gateway otherwise. No second limiter: each
/// is a policy of an existing kind, refused with that kind's 429, <c>Retry-After</c> and <c>x-ratelimit-*</c> headers and
/// named by <see cref="RequestsPerMinute"/>, <see cref="Tokens"/> or <see cref="InFlight"/> in the error body and
/// <c>x-gateway-limit</c>.
/// </summary>
internal static class TenantLimits
{
    /// <summary>The policy of <c>Limits:RequestsPerMinute</c>: <c>tenant:NAME:requests_per_minute</c>.</summary>
    public static string RequestsPerMinute(string tenant) => $"tenant:{tenant}:requests_per_minute";

    /// <summary>The policy of <c>Limits:Tokens</c> per <c>Limits:TokenWindow</c>: <c>tenant:NAME:tokens</c>.</summary>
    public static string Tokens(string tenant) => $"tenant:{tenant}:tokens";

    /// <summary>The policy of <c>Limits:MaxInFlight</c>: <c>tenant:NAME:in_flight</c>.</summary>
    public static string InFlight(string tenant) => $"tenant:{tenant}:in_flight";

    /// <summary>Segments of the one-minute sliding window of <c>RequestsPerMinute</c> (5 s each).</summary>
    public const int MinuteSegments = 12;

    /// <summary>
    /// The policies of one tenant's limits (none for a limit of 0): requests per minute as a <see cref="PolicyKind.SlidingWindow"/>
    /// of one minute in 5 s segments, tokens as a <see cref="PolicyKind.Tokens"/> budget per <c>TokenWindow</c> (reserved up
    /// front, reconciled with the reported usage), in-flight requests as a <see cref="PolicyKind.Concurrency"/> limit
    /// (leases renewed in Redis when fleet-wide).
    /// </summary>
    /// <param name="tenant">The tenant's name.</param>
    /// <param name="limits">Its limits.</param>
    /// <param name="global">Whether the limits count fleet-wide (in Redis).</param>
    public static List<(string Name, PolicyOptions Options)> Compile(string tenant, TenantLimitsOptions limits, bool global)
    {
        var scope = global ? PolicyScope.Global : PolicyScope.Local;
        var policies = new List<(string, PolicyOptions)>(3);
        if (limits.RequestsPerMinute > 0)
        {
            policies.Add((RequestsPerMinute(tenant), new PolicyOptions
            {
                Kind = PolicyKind.SlidingWindow, Scope = scope, Partition = nameof(PartitionPart.Tenant),
                PermitLimit = limits.RequestsPerMinute, Window = TimeSpan.FromMinutes(1), SegmentsPerWindow = MinuteSegments,
            }));
        }

        if (limits.Tokens > 0)
        {
            policies.Add((Tokens(tenant), new PolicyOptions
            {
                Kind = PolicyKind.Tokens, Scope = scope, Partition = nameof(PartitionPart.Tenant),
                Tokens = limits.Tokens, Window = limits.TokenWindow,
            }));
        }

        if (limits.MaxInFlight > 0)
        {
            policies.Add((InFlight(tenant), new PolicyOptions
            {
                Kind = PolicyKind.Concurrency, Scope = scope, Partition = nameof(PartitionPart.Tenant),
                PermitLimit = limits.MaxInFlight,
            }));
        }

        return policies;
    }
}

/// <summary>
/// One tenant's compiled limits, applied on every proxied route to the exchanges of that tenant, after the route's own
/// policies: <see cref="RequestPolicies"/> by <c>RateLimitStep</c>, <see cref="TokenPolicies"/> by <c>TokenStep</c>.
/// </summary>
internal sealed class TenantShaping
{
    private readonly List<(string Name, PolicyOptions Options)> _limits;

    public TenantShaping(string name, List<(string Name, PolicyOptions Options)> limits)
    {
        Name = name;
        FairShareKey = "tenant:" + name;
        _limits = limits;
    }

    /// <summary>The tenant's name.</summary>
    public string Name { get; }

    /// <summary>The tenant's key in the admission queue's fair share (<c>tenant:NAME</c>; client keys are <c>key:</c> or <c>ip:</c>).</summary>
    public string FairShareKey { get; }

    /// <summary>Requests per minute and in-flight policies (counted in requests).</summary>
    public ShapingPolicy[] RequestPolicies { get; private set; } = [];

    /// <summary>The tokens policy, if any (counted in tokens).</summary>
    public ShapingPolicy[] TokenPolicies { get; private set; } = [];

    /// <summary>Picks the compiled policies out of the runtime's (called once, when the configuration is built).</summary>
    internal void Resolve(Dictionary<string, ShapingPolicy> policies)
    {
        var requests = new List<ShapingPolicy>(2);
        var tokens = new List<ShapingPolicy>(1);
        foreach (var (name, _) in _limits)
        {
            if (policies.TryGetValue(name, out var policy))
            {
                (policy.CountsTokens ? tokens : requests).Add(policy);
            }
        }

        RequestPolicies = [.. requests];
        TokenPolicies = [.. tokens];
    }
}

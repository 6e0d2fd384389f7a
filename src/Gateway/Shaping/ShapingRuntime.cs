using System.Runtime.CompilerServices;
using Gateway.Configuration;
using Gateway.Shaping.Admission;
using Gateway.Shaping.Policies;
using Yarp.ReverseProxy.Configuration;

namespace Gateway.Shaping;

/// <summary>
/// The shaping configuration in force: compiled policies and per-cluster admission. Rebuilt when the configuration
/// reloads, from what <see cref="ConfigurationGate"/> validated (a configuration that does not validate never gets
/// here: the last good limits stay), before YARP sees the routes that name the new policies; a policy
/// whose settings did not change keeps its counters, and a cluster's admission controller is updated in place, so a
/// reload neither drops a connection nor forgets who is in flight.
/// </summary>
internal sealed partial class ShapingRuntime
{
    /// <summary>The route metadata key naming a route's policies, comma-separated, applied in order.</summary>
    public const string PoliciesMetadataKey = "Policies";

    private readonly TimeProvider _time;
    private readonly ILogger<ShapingRuntime> _logger;
    private readonly Lock _lock = new();
    private volatile ShapingState _current;
    private readonly ITimer _eviction;

    /// <summary>How often every policy forgets its idle partitions, so a quiet gateway gives the memory back.</summary>
    public static readonly TimeSpan EvictionInterval = TimeSpan.FromMinutes(1);

    public ShapingRuntime(ConfigurationGate configuration, TimeProvider time, ILogger<ShapingRuntime> logger)
    {
        _time = time;
        _logger = logger;
        var options = configuration.Current.Shaping; // validated at start-up by ConfigurationValidator
        Redis = NewRedis(options);
        _current = Build(options, configuration.Current.Tenants, previous: null);
        configuration.OnApply(Apply);
        _eviction = time.CreateTimer(static s => ((ShapingRuntime)s!).EvictIdle(), this, EvictionInterval, EvictionInterval);
    }

    /// <summary>The connection of global policies.</summary>
    public ShapingRedis Redis { get; private set; }

    /// <summary>The configuration in force.</summary>
    public ShapingState Current => _current;

    /// <summary>Reloads that changed the shaping configuration.</summary>
    public int Applied { get; private set; }

    /// <summary>The policy names of a route.</summary>
    public static string[] PolicyNames(RouteConfig route) =>
        route.Metadata is not null && route.Metadata.TryGetValue(PoliciesMetadataKey, out var v) && !string.IsNullOrWhiteSpace(v)
            ? v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            : [];

    /// <summary>Puts a validated shaping configuration and the tenants' limits in force (called by <see cref="ConfigurationGate"/>).</summary>
    private void Apply(GatewayOptions gateway)
    {
        lock (_lock)
        {
            var options = gateway.Shaping;
            if (options != _current.Options || !SameTenants(gateway.Tenants, _current.TenantOptions)) // record equality: only a real change rebuilds
            {
                Swap(options, gateway.Tenants);
            }
        }
    }

    private static bool SameTenants(ConfigMap<global::Gateway.Tenants.TenantOptions> a, ConfigMap<global::Gateway.Tenants.TenantOptions> b) => a.Equals(b);

    private void Swap(ShapingOptions options, ConfigMap<global::Gateway.Tenants.TenantOptions> tenants)
    {
        if (options.Redis != _current.Options.Redis || options.RedisTimeout != _current.Options.RedisTimeout || options.RedisProbeInterval != _current.Options.RedisProbeInterval)
        {
            var old = Redis;
            Redis = NewRedis(options);
            _ = Task.Delay(TimeSpan.FromSeconds(30), _time).ContinueWith(_ => old.DisposeAsync().AsTask(), TaskScheduler.Default);
        }

        _current = Build(options, tenants, _current);
        Applied++;
        // The tenants' quotas are policies too (compiled next to the configured ones): counted apart, so a reload with
        // only tenant quotas does not read "0 policies" (stranger review).
        var tenantPolicies = 0;
        foreach (var t in _current.Tenants.Values)
        {
            tenantPolicies += t.RequestPolicies.Length + t.TokenPolicies.Length;
        }

        Log.ReloadApplied(_logger, options.Policies.Count, tenantPolicies, options.Admission.Count);
    }

    /// <summary>Every policy in force forgets its idle partitions.</summary>
    public void EvictIdle()
    {
        foreach (var policy in _current.Policies.Values)
        {
            policy.EvictIdle();
        }
    }

    private ShapingRedis NewRedis(ShapingOptions options) => new(options.Redis, options.RedisTimeout, options.RedisProbeInterval, _time, _logger);

    private ShapingState Build(ShapingOptions options, ConfigMap<global::Gateway.Tenants.TenantOptions> tenantOptions, ShapingState? previous)
    {
        var policies = new Dictionary<string, ShapingPolicy>(StringComparer.OrdinalIgnoreCase);
        var tenants = new Dictionary<string, global::Gateway.Tenants.TenantShaping>(StringComparer.Ordinal);
        var compiled = new List<(string Name, PolicyOptions Options)>(options.Policies.Count + (tenantOptions.Count * 3));
        foreach (var (name, o) in options.Policies)
        {
            compiled.Add((name, o));
        }

        foreach (var (tenant, t) in tenantOptions)
        {
            var limits = global::Gateway.Tenants.TenantLimits.Compile(tenant, t.Limits, global: !string.IsNullOrWhiteSpace(options.Redis));
            tenants[tenant] = new global::Gateway.Tenants.TenantShaping(tenant, limits);
            foreach (var (name, o) in limits)
            {
                compiled.Add((name, o));
            }
        }

        foreach (var (name, o) in compiled)
        {
            if (previous is not null && previous.Policies.TryGetValue(name, out var old)
                && old.Options == o && previous.Options.Instances == options.Instances
                && previous.Options.Redis == options.Redis && previous.Options.RedisTimeout == options.RedisTimeout
                && previous.Options.RedisProbeInterval == options.RedisProbeInterval)
            {
                policies[name] = old;
                continue;
            }

            policies[name] = Compile(name, o, options.Instances);
        }

        var clusters = new Dictionary<string, ClusterShaping>(StringComparer.OrdinalIgnoreCase);
        foreach (var (cluster, a) in options.Admission)
        {
            var settings = new AdmissionSettings(a);
            if (previous is not null && previous.Clusters.TryGetValue(cluster, out var existing))
            {
                existing.Controller.Update(settings);
                var fleet = existing.Options.FleetMaxInFlight == a.FleetMaxInFlight && existing.Options.FleetLeaseTtl == a.FleetLeaseTtl
                    && previous.Options.Redis == options.Redis ? existing.Fleet : Fleet(cluster, a, options.Instances);
                clusters[cluster] = existing.Options.CircuitBreaker == a.CircuitBreaker
                    ? existing with { Options = a, Fleet = fleet }
                    : new ClusterShaping(a, existing.Controller, Breaker(a.CircuitBreaker), fleet);
            }
            else
            {
                clusters[cluster] = new ClusterShaping(a, new AdmissionController(cluster, settings, _time), Breaker(a.CircuitBreaker), Fleet(cluster, a, options.Instances));
            }
        }

        foreach (var t in tenants.Values)
        {
            t.Resolve(policies);
        }

        return new ShapingState(options, policies, clusters, tenants, tenantOptions);
    }

    private ShapingPolicy Compile(string name, PolicyOptions o, int instances)
    {
        if (!PartitionKey.TryParse(o.Partition, out var partition, out var error))
        {
            throw new InvalidOperationException($"{ShapingOptions.Section}:Policies:{name}:Partition: {error}"); // validated before; a bug if reached
        }
        ShapingPolicy Local(int share) => o.Kind == PolicyKind.Tokens
            ? new LocalTokenPolicy(name, o, partition, _time, share)
            : new LocalLimiterPolicy(name, o, partition, _time, share);

        return o.Scope != PolicyScope.Global ? Local(1)
            : o.Kind == PolicyKind.Concurrency ? new GlobalConcurrencyPolicy(name, o, partition, Redis, Local(instances), _time)
            : new GlobalPolicy(name, o, partition, Redis, Local(instances));
    }

    private ClusterBreaker? Breaker(CircuitBreakerOptions o) => o.Enabled ? new ClusterBreaker(o, _time) : null;

    /// <summary>
    /// The fleet-wide cap of a cluster's admission (<see cref="AdmissionOptions.FleetMaxInFlight"/>): the same leases as
    /// a global Concurrency policy, named <c>admission:CLUSTER</c>, one partition; while Redis is away, this gateway's
    /// share of the cap (FleetMaxInFlight / Instances) applies.
    /// </summary>
    private ShapingPolicy? Fleet(string cluster, AdmissionOptions a, int instances) => a.FleetMaxInFlight <= 0 ? null
        : Compile(Contracts.Wire.GatewayLimits.Admission(cluster), new PolicyOptions
        {
            Kind = PolicyKind.Concurrency,
            Scope = PolicyScope.Global,
            PermitLimit = a.FleetMaxInFlight,
            Partition = "Global",
            LeaseTtl = a.FleetLeaseTtl,
        }, instances);

    private static partial class Log
    {
        [LoggerMessage(EventId = 4201, Level = LogLevel.Information, Message = "Shaping configuration reloaded: {Policies} policies, {TenantPolicies} tenant policies, admission on {Clusters} clusters.")]
        public static partial void ReloadApplied(ILogger logger, int policies, int tenantPolicies, int clusters);
    }
}

/// <summary>A compiled shaping configuration.</summary>
internal sealed class ShapingState(ShapingOptions options, Dictionary<string, ShapingPolicy> policies, Dictionary<string, ClusterShaping> clusters,
    Dictionary<string, global::Gateway.Tenants.TenantShaping>? tenants = null, ConfigMap<global::Gateway.Tenants.TenantOptions>? tenantOptions = null)
{
    private readonly ConditionalWeakTable<RouteConfig, RoutePlan> _routes = [];

    public ShapingOptions Options { get; } = options;

    /// <summary>The tenants' configuration these limits were compiled from.</summary>
    public ConfigMap<global::Gateway.Tenants.TenantOptions> TenantOptions { get; } = tenantOptions ?? new(StringComparer.Ordinal);

    /// <summary>The tenants' compiled limits by tenant name.</summary>
    public Dictionary<string, global::Gateway.Tenants.TenantShaping> Tenants { get; } = tenants ?? new(StringComparer.Ordinal);

    /// <summary>The compiled limits of <paramref name="tenant"/>, or null (no tenant, or one this configuration does not know).</summary>
    public global::Gateway.Tenants.TenantShaping? TenantFor(global::Gateway.Tenants.Tenant? tenant) => tenant is not null && Tenants.TryGetValue(tenant.Name, out var t) ? t : null;

    public Dictionary<string, ShapingPolicy> Policies { get; } = policies;

    public Dictionary<string, ClusterShaping> Clusters { get; } = clusters;

    private readonly ConditionalWeakTable<RouteConfig, System.Collections.Concurrent.ConcurrentDictionary<string, RoutePlan>> _routesByCluster = [];

    /// <summary>The shaping steps of a route: the policies it names that exist, split by unit, and its cluster's admission (cached per route configuration).</summary>
    public RoutePlan PlanFor(RouteConfig route) => _routes.GetValue(route, r => Compile(r, r.ClusterId));

    /// <summary>The shaping steps of a route whose request goes to <paramref name="clusterId"/> (a model's cluster): the route's policies and that cluster's admission.</summary>
    public RoutePlan PlanFor(RouteConfig route, string? clusterId) =>
        clusterId is null || string.Equals(clusterId, route.ClusterId, StringComparison.OrdinalIgnoreCase)
            ? PlanFor(route)
            : _routesByCluster.GetValue(route, static _ => new(StringComparer.OrdinalIgnoreCase)).GetOrAdd(clusterId, static (c, s) => s.State.Compile(s.Route, c), (State: this, Route: route));

    private RoutePlan Compile(RouteConfig route, string? clusterId)
    {
        var requests = new List<ShapingPolicy>();
        var tokens = new List<ShapingPolicy>();
        foreach (var name in ShapingRuntime.PolicyNames(route))
        {
            if (Policies.TryGetValue(name, out var policy))
            {
                (policy.CountsTokens ? tokens : requests).Add(policy);
            }
        }

        ClusterShaping? admission = null;
        if (clusterId is not null)
        {
            Clusters.TryGetValue(clusterId, out admission);
        }

        return requests.Count == 0 && tokens.Count == 0 && admission is null ? RoutePlan.Empty : new RoutePlan([.. requests], [.. tokens], admission);
    }
}

/// <summary>Admission and circuit breaking of one cluster.</summary>
/// <param name="Options">The cluster's admission settings.</param>
/// <param name="Controller">The in-flight cap, priority queue and adaptive limit of this gateway.</param>
/// <param name="Breaker">The circuit breaker, or null.</param>
/// <param name="Fleet">The fleet-wide cap (<see cref="AdmissionOptions.FleetMaxInFlight"/>), or null.</param>
internal sealed record ClusterShaping(AdmissionOptions Options, AdmissionController Controller, ClusterBreaker? Breaker, ShapingPolicy? Fleet = null);

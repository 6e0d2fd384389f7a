using System.Diagnostics;
using System.Diagnostics.Metrics;
using Gateway.Telemetry;

namespace Gateway.Shaping;

/// <summary>
/// Every shaping decision as a metric. Prometheus names: <c>gateway_shaping_decisions_total{policy,outcome,reason}</c>
/// (outcome: <c>admitted</c>, <c>refused</c>, <c>shadow_refused</c>), <c>gateway_admission_decisions_total{cluster,outcome,reason}</c>,
/// <c>gateway_admission_queue_depth{cluster}</c>, <c>gateway_admission_inflight{cluster}</c>, <c>gateway_admission_limit{cluster}</c>,
/// <c>gateway_admission_wait_seconds{cluster}</c>, <c>gateway_shaping_redis_fallback</c>, <c>gateway_shaping_tokens_total{policy,kind}</c>,
/// <c>gateway_shaping_partitions{policy}</c> (partitions a policy holds in this gateway's memory; idle ones are forgotten
/// within a minute or two), <c>gateway_shaping_queue_depth{policy}</c> (requests waiting in a policy's queue).
/// Each policy's and cluster's decisions are also kept as plain running totals since start-up (<see cref="Policies"/>,
/// <see cref="Clusters"/>: three <see cref="Interlocked"/> counters each, no lock), which the dashboard shows whether or
/// not a metrics listener was on.
/// </summary>
internal sealed class ShapingMetrics
{
    private readonly Counter<long> _decisions;
    private readonly Counter<long> _admission;
    private readonly Histogram<double> _wait;
    private readonly Counter<long> _tokens;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, DecisionTally> _policyTallies = new(StringComparer.Ordinal);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, DecisionTally> _clusterTallies = new(StringComparer.Ordinal);

    public ShapingMetrics(GatewayMetrics metrics, ShapingRuntime runtime)
    {
        var meter = metrics.Meter;
        _decisions = meter.CreateCounter<long>("gateway.shaping.decisions", "{request}", "Rate-limit policy decisions by policy, outcome and reason.");
        _admission = meter.CreateCounter<long>("gateway.admission.decisions", "{request}", "Admission decisions by cluster, outcome and reason.");
        _wait = meter.CreateHistogram<double>("gateway.admission.wait", "s", "Time admitted requests waited in the admission queue.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5] });
        _tokens = meter.CreateCounter<long>("gateway.shaping.tokens", "{token}", "LLM tokens by token policy: reserved up front (kind=estimated), finally charged after reconciliation with the reported usage (kind=actual, debt included), given back (kind=refunded).");
        meter.CreateObservableGauge("gateway.admission.queue.depth", () => Observe(runtime, static c => c.Queued), "{request}", "Requests waiting for admission, by cluster.");
        meter.CreateObservableGauge("gateway.admission.inflight", () => Observe(runtime, static c => c.InFlight), "{request}", "Requests admitted and in flight to the cluster.");
        meter.CreateObservableGauge("gateway.admission.limit", () => Observe(runtime, static c => c.Limit), "{request}", "The cluster's in-flight limit now (the adaptive one when enabled).");
        meter.CreateObservableGauge("gateway.admission.headroom.held", () => Observe(runtime, static c => c.HeldBack), "{request}", "Slots of the cluster's limit free while requests wait: held back by FairShareHeadroom for keys under their fair share (0 without it).");
        meter.CreateObservableGauge("gateway.shaping.partitions", () => ObservePolicies(runtime, static p => p.Partitions), "{partition}", "Partitions a policy holds in this gateway's memory (idle ones are forgotten).");
        meter.CreateObservableGauge("gateway.shaping.queue.depth", () => ObservePolicies(runtime, static p => p.Queued), "{request}", "Requests waiting in a policy's queue (QueueLimit).");
        meter.CreateObservableGauge("gateway.shaping.redis.fallback", () => runtime.Redis.FallingBack ? 1 : 0, description: "1 while global policies fall back because Redis is unreachable.");

        // Every configured policy's and cluster's series exist from the start, at 0 (policies added by a reload appear
        // with their first decision).
        foreach (var policy in runtime.Current.Policies.Keys)
        {
            foreach (var outcome in new[] { "admitted", "refused" })
            {
                _decisions.Add(0, new TagList { { "policy", policy }, { "outcome", outcome }, { "reason", "none" } });
            }
        }

        foreach (var cluster in runtime.Current.Clusters.Keys)
        {
            foreach (var outcome in new[] { "admitted", "refused" })
            {
                _admission.Add(0, new TagList { { "cluster", cluster }, { "outcome", outcome }, { "reason", "none" } });
            }
        }
    }

    /// <summary>Each rate-limit policy's decisions since start-up, by name (a policy appears with its first decision).</summary>
    public IReadOnlyDictionary<string, DecisionTally> Policies => _policyTallies;

    /// <summary>Each cluster's admission decisions since start-up, by cluster.</summary>
    public IReadOnlyDictionary<string, DecisionTally> Clusters => _clusterTallies;

    public void Decision(string policy, string outcome, string? reason)
    {
        Tally(_policyTallies, policy, outcome);
        if (_decisions.Enabled)
        {
            _decisions.Add(1, new TagList { { "policy", policy }, { "outcome", outcome }, { "reason", reason ?? "none" } });
        }
    }

    public void Admission(string cluster, string outcome, string? reason, TimeSpan waited)
    {
        Tally(_clusterTallies, cluster, outcome);
        if (_admission.Enabled)
        {
            _admission.Add(1, new TagList { { "cluster", cluster }, { "outcome", outcome }, { "reason", reason ?? "none" } });
        }

        if (outcome == "admitted" && _wait.Enabled)
        {
            _wait.Record(waited.TotalSeconds, new KeyValuePair<string, object?>("cluster", cluster));
        }
    }

    public void Tokens(string policy, string kind, long tokens)
    {
        if (_tokens.Enabled && tokens > 0)
        {
            _tokens.Add(tokens, new TagList { { "policy", policy }, { "kind", kind } });
        }
    }

    private static void Tally(System.Collections.Concurrent.ConcurrentDictionary<string, DecisionTally> tallies, string name, string outcome)
    {
        // Names come from the configuration (policies, clusters): a bounded set.
        var tally = tallies.TryGetValue(name, out var t) ? t : tallies.GetOrAdd(name, static _ => new DecisionTally());
        switch (outcome)
        {
            case "admitted": Interlocked.Increment(ref tally.Admitted); break;
            case "refused": Interlocked.Increment(ref tally.Refused); break;
            case "shadow_refused": Interlocked.Increment(ref tally.ShadowRefused); break;
        }
    }

    private static IEnumerable<Measurement<int>> ObservePolicies(ShapingRuntime runtime, Func<Policies.ShapingPolicy, int?> value)
    {
        foreach (var (name, policy) in runtime.Current.Policies)
        {
            if (value(policy) is { } v)
            {
                yield return new Measurement<int>(v, new KeyValuePair<string, object?>("policy", name));
            }
        }
    }

    private static IEnumerable<Measurement<int>> Observe(ShapingRuntime runtime, Func<Admission.AdmissionController, int> value)
    {
        foreach (var (cluster, c) in runtime.Current.Clusters)
        {
            yield return new Measurement<int>(value(c.Controller), new KeyValuePair<string, object?>("cluster", cluster));
        }
    }
}

/// <summary>Decisions of one policy or cluster since start-up (see <see cref="ShapingMetrics.Policies"/>).</summary>
internal sealed class DecisionTally
{
    public long Admitted;
    public long Refused;
    public long ShadowRefused;
}

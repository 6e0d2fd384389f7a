using Gateway.Admin.Stats;
using Gateway.Shaping;

namespace Gateway.Admin;

/// <summary>
/// What <c>/admin/stats</c> answers, read from the <see cref="TrafficHistory"/> that completion feeds from start-up and
/// from the shaping runtime: the series over a range of the history (binned so that a page never gets more than
/// <see cref="MaxPoints"/> points; a bin with no traffic has no latency, which the page draws as a gap), the totals
/// since start-up (requests, status mix, refusals by limit, each policy's and cluster's decisions), each route's and
/// tenant's totals and last <see cref="TrafficHistory.Window"/> seconds, and each cluster's state now. Reading takes no
/// lock the request path takes.
/// </summary>
internal sealed class DashboardStats(TrafficHistory history, ShapingRuntime shaping, ShapingMetrics shapingMetrics)
{
    /// <summary>The most points a series holds; a longer range is binned (several seconds per point).</summary>
    public const int MaxPoints = 240;

    /// <summary>The dashboard's snapshot (plain objects, serialized as JSON by the endpoint).</summary>
    /// <param name="rangeSeconds">How many of the last whole seconds the series covers; null: everything held (since start-up, or the whole ring).</param>
    public object Snapshot(int? rangeSeconds = null)
    {
        var now = history.Now;
        var held = (int)Math.Min(history.Ring.Length, now); // whole seconds held (the current one is still filling)
        var range = Math.Clamp(rangeSeconds ?? held, 0, held);
        var step = Math.Max(1, (int)Math.Ceiling(range / (double)MaxPoints));
        var series = new List<object>(Math.Min(MaxPoints, range));
        var state = shaping.Current; // one configuration for the whole snapshot, even if a reload swaps it meanwhile
        var clusterNames = state.Clusters.Keys.Order(StringComparer.Ordinal).ToArray();
        var clusterSeries = clusterNames.ToDictionary(static c => c, static _ => (Queued: new List<int?>(), InFlight: new List<int?>(), Limit: new List<int?>()), StringComparer.Ordinal);
        for (var from = now - range; from < now; from += step)
        {
            var to = Math.Min(from + step, now);
            var bin = new SecondBucket(from);
            for (var s = from; s < to; s++)
            {
                if (history.Ring.Get(s) is { } b)
                {
                    bin.Merge(b);
                }
            }

            var seconds = (double)(to - from);
            series.Add(new
            {
                t = from,
                rps = Math.Round(bin.Requests / seconds, 2),
                served = Math.Round((bin.Requests - bin.Refused - bin.Errors) / seconds, 2),
                refused = Math.Round(bin.Refused / seconds, 2),
                errors = Math.Round(bin.Errors / seconds, 2),
                p50 = Ms(bin.Latency, 50),
                p95 = Ms(bin.Latency, 95),
                p99 = Ms(bin.Latency, 99),
                ttft_p95 = Ms(bin.Ttft, 95),
                queue_wait_p95 = Ms(bin.QueueWait, 95),
                tokens_in = Math.Round(bin.TokensIn / seconds, 1),
                tokens_out = Math.Round(bin.TokensOut / seconds, 1),
            });

            foreach (var name in clusterNames)
            {
                int? queued = null, inFlight = null, limit = null;
                if (history.Clusters.TryGetValue(name, out var gauges))
                {
                    for (var s = from; s < to; s++)
                    {
                        if (gauges.Get(s) is { } g)
                        {
                            queued = Math.Max(queued ?? 0, g.Queued);
                            inFlight = Math.Max(inFlight ?? 0, g.InFlight);
                            limit = Math.Max(limit ?? 0, g.Limit);
                        }
                    }
                }

                var lists = clusterSeries[name];
                lists.Queued.Add(queued);
                lists.InFlight.Add(inFlight);
                lists.Limit.Add(limit);
            }
        }

        var recent = Recent(history.Ring, now);
        var routes = new List<object>();
        foreach (var ((listener, route), stats) in history.Routes.OrderBy(static kv => kv.Key.Route, StringComparer.Ordinal).ThenBy(static kv => kv.Key.Listener, StringComparer.Ordinal))
        {
            var r = Recent(stats.Recent, now);
            routes.Add(new
            {
                listener,
                route,
                total = stats.Total.Requests,
                rps = Math.Round(r.Requests / (double)TrafficHistory.Window, 1),
                status = StatusMix(stats.Total.Status),
                latency_ms = Percentiles(r.Latency),
                ttft_ms = r.Ttft.Count > 0 ? Percentiles(r.Ttft) : null,
            });
        }

        var tenants = new List<object>();
        foreach (var (tenant, stats) in history.Tenants.OrderBy(static kv => kv.Key, StringComparer.Ordinal))
        {
            var r = Recent(stats.Recent, now);
            var t = stats.Total;
            tenants.Add(new
            {
                tenant,
                requests = t.Requests,
                rps = Math.Round(r.Requests / (double)TrafficHistory.Window, 1),
                status = StatusMix(t.Status),
                refused = t.Refused,
                refused_by_limit = Limits(t),
                tokens_in = t.TokensIn,
                tokens_out = t.TokensOut,
                queued = t.Queued,
                queue_wait_ms = t.Queued > 0 ? new { mean = Math.Round(t.QueueWaitMicros / 1000.0 / t.Queued, 2), p95 = Ms(t.QueueWait, 95), p99 = Ms(t.QueueWait, 99) } : null,
            });
        }

        var policies = new List<object>();
        foreach (var p in state.Policies.Values)
        {
            shapingMetrics.Policies.TryGetValue(p.Name, out var counts);
            policies.Add(new
            {
                name = p.Name,
                kind = p.Options.Kind.ToString(),
                scope = p.Options.Scope.ToString(),
                partition = p.Options.Partition,
                shadow = p.Options.Shadow,
                limit = Describe(p.Options),
                admitted = counts is null ? 0 : Volatile.Read(ref counts.Admitted),
                refused = counts is null ? 0 : Volatile.Read(ref counts.Refused),
                shadow_refused = counts is null ? 0 : Volatile.Read(ref counts.ShadowRefused),
            });
        }

        var clusters = new List<object>();
        foreach (var name in clusterNames)
        {
            var c = state.Clusters[name];
            shapingMetrics.Clusters.TryGetValue(name, out var counts);
            var lists = clusterSeries[name];
            clusters.Add(new
            {
                cluster = name,
                inflight = c.Controller.InFlight,
                queued = c.Controller.Queued,
                limit = c.Controller.Limit,
                max_in_flight = c.Options.MaxInFlight,
                queue_limit = c.Options.QueueLimit,
                adaptive = c.Options.Adaptive.Enabled,
                circuit = c.Breaker?.State.CircuitState.ToString() ?? "none",
                admitted = counts is null ? 0 : Volatile.Read(ref counts.Admitted),
                refused = counts is null ? 0 : Volatile.Read(ref counts.Refused),
                limit_series = lists.Limit,
                queued_series = lists.Queued,
                inflight_series = lists.InFlight,
            });
        }

        var total = history.Total;
        return new
        {
            started_at = history.StartedAt,
            boot_id = history.BootId,
            uptime_s = now,
            history_s = history.Ring.Length,
            range_s = range,
            step_s = step,
            window_s = TrafficHistory.Window,
            rps = Math.Round(recent.Requests / (double)TrafficHistory.Window, 1),
            latency_ms = Percentiles(recent.Latency),
            ttft_ms = recent.Ttft.Count > 0 ? Percentiles(recent.Ttft) : null,
            totals = new
            {
                requests = total.Requests,
                status = StatusMix(total.Status),
                refused = total.Refused,
                refused_by_limit = Limits(total),
                tokens_in = total.TokensIn,
                tokens_out = total.TokensOut,
                late = history.Late,
                sample_failures = history.SampleFailures,
            },
            routes,
            tenants,
            series,
            policies,
            clusters,
            shaping_redis = new { configured = !string.IsNullOrWhiteSpace(state.Options.Redis), fallback = shaping.Redis.FallingBack },
        };
    }

    /// <summary>The last <see cref="TrafficHistory.Window"/> seconds of a ring, the current one included, merged.</summary>
    private static SecondBucket Recent(SecondRing ring, long now)
    {
        var merged = new SecondBucket(-1);
        for (var s = now - TrafficHistory.Window + 1; s <= now; s++)
        {
            if (ring.Get(s) is { } b)
            {
                merged.Merge(b);
            }
        }

        return merged;
    }

    private static Dictionary<string, long> StatusMix(long[] counts)
    {
        var mix = new Dictionary<string, long>(StringComparer.Ordinal);
        for (var i = 0; i < SecondBucket.StatusNames.Length; i++)
        {
            var n = Volatile.Read(ref counts[i]);
            if (n > 0)
            {
                mix[SecondBucket.StatusNames[i]] = n;
            }
        }

        return mix;
    }

    private static SortedDictionary<string, long> Limits(SecondBucket bucket)
    {
        var limits = new SortedDictionary<string, long>(StringComparer.Ordinal);
        if (bucket.RefusedBy is { } map)
        {
            foreach (var (limit, box) in map)
            {
                limits[limit] = Volatile.Read(ref box.Value);
            }
        }

        return limits;
    }

    private static object Percentiles(LogHistogram h) => new { p50 = Ms(h, 50), p95 = Ms(h, 95), p99 = Ms(h, 99), count = h.Count };

    /// <summary>A percentile in milliseconds (2 decimals), or null when nothing was recorded: no traffic is not 0 ms.</summary>
    private static double? Ms(LogHistogram h, double percentile) => h.Percentile(percentile) is { } ms ? Math.Round(ms, 2) : null;

    private static string Describe(PolicyOptions o) => o.Kind switch
    {
        PolicyKind.TokenBucket => $"{o.TokensPerPeriod}/{o.ReplenishmentPeriod.TotalSeconds:0.###}s, burst {o.TokenLimit}",
        PolicyKind.FixedWindow or PolicyKind.SlidingWindow => $"{o.PermitLimit}/{o.EffectiveWindow.TotalSeconds:0.###}s",
        PolicyKind.Concurrency => $"{o.PermitLimit} at once",
        PolicyKind.Tokens => $"{o.TokenBudget} tokens/{o.EffectiveWindow.TotalSeconds:0.###}s",
        PolicyKind.WebSocket => $"{o.PermitLimit} connections, {o.MessagesPerConnection} messages each",
        _ => o.Kind.ToString(),
    };
}

using System.Diagnostics.Metrics;
using Gateway.Shaping;
using Gateway.Telemetry;
using HdrHistogram;

namespace Gateway.Admin;

/// <summary>The dashboard's snapshot: what <c>/admin/stats</c> answers, built from the counters kept per second.</summary>
internal sealed partial class DashboardStats
{
    /// <summary>The dashboard's snapshot (plain objects, serialized as JSON by the endpoint).</summary>
    public object Snapshot()
    {
        EnsureListening();
        lock (_lock)
        {
            var now = Advance();
            var routes = new List<object>();
            var allLatency = NewHistogram();
            var allTtft = NewHistogram();
            long windowRequests = 0;
            var statusTotals = new long[StatusNames.Length];
            foreach (var ((listener, route), r) in _routes.OrderBy(static kv => kv.Key.Route, StringComparer.Ordinal).ThenBy(static kv => kv.Key.Listener, StringComparer.Ordinal))
            {
                var latency = NewHistogram();
                var ttft = NewHistogram();
                long requests = 0;
                for (var i = 0; i < Window; i++)
                {
                    if (now - i < 0)
                    {
                        continue;
                    }

                    var slot = (int)((now - i) % Window);
                    if (r.SlotSecond[slot] != now - i)
                    {
                        continue;
                    }

                    latency.Add(r.Latency[slot]);
                    ttft.Add(r.Ttft[slot]);
                    requests += r.PerSecond[slot];
                }

                allLatency.Add(latency);
                allTtft.Add(ttft);
                windowRequests += requests;
                for (var s = 0; s < StatusNames.Length; s++)
                {
                    statusTotals[s] += r.Status[s];
                }

                routes.Add(new
                {
                    listener,
                    route,
                    total = r.Total,
                    rps = Math.Round(requests / (double)Window, 1),
                    status = StatusMix(r.Status),
                    latency_ms = Percentiles(latency),
                    ttft_ms = ttft.TotalCount > 0 ? Percentiles(ttft) : null,
                });
            }

            var series = new List<object>(History);
            for (var s = Math.Max(0, now - History + 1); s <= now; s++)
            {
                var p = _series[s % History];
                if (p.Second != s)
                {
                    series.Add(new { t = s, rps = 0L, errors = 0L, refused = 0L, p50 = 0.0, p95 = 0.0, p99 = 0.0, ttft_p95 = (double?)null });
                    continue;
                }

                series.Add(new
                {
                    t = s,
                    rps = p.Requests,
                    errors = p.Errors,
                    refused = p.Refused,
                    p50 = Ms(p.Latency, 50),
                    p95 = Ms(p.Latency, 95),
                    p99 = Ms(p.Latency, 99),
                    ttft_p95 = p.Ttft is { TotalCount: > 0 } ? Ms(p.Ttft, 95) : (double?)null,
                });
            }

            var state = _shaping.Current;
            var policies = state.Policies.Values.Select(p =>
            {
                _policies.TryGetValue(p.Name, out var counts);
                return (object)new
                {
                    name = p.Name,
                    kind = p.Options.Kind.ToString(),
                    scope = p.Options.Scope.ToString(),
                    partition = p.Options.Partition,
                    shadow = p.Options.Shadow,
                    limit = Describe(p.Options),
                    admitted = counts?.Admitted ?? 0,
                    refused = counts?.Refused ?? 0,
                    shadow_refused = counts?.ShadowRefused ?? 0,
                };
            }).ToList();

            var clusters = state.Clusters.Select(kv => (object)new
            {
                cluster = kv.Key,
                inflight = kv.Value.Controller.InFlight,
                queued = kv.Value.Controller.Queued,
                limit = kv.Value.Controller.Limit,
                max_in_flight = kv.Value.Options.MaxInFlight,
                queue_limit = kv.Value.Options.QueueLimit,
                adaptive = kv.Value.Options.Adaptive.Enabled,
                circuit = kv.Value.Breaker?.State.CircuitState.ToString() ?? "none",
                limit_series = _limits.TryGetValue(kv.Key, out var l) ? Ordered(l, now) : [],
            }).ToList();

            return new
            {
                uptime_s = (long)_time.GetElapsedTime(_start).TotalSeconds, // since the gateway started
                counting_s = (long)_time.GetElapsedTime(_listeningSince).TotalSeconds, // since the dashboard was first opened: its totals count from then (/metrics counts from start-up)
                window_s = Window,
                rps = Math.Round(windowRequests / (double)Window, 1),
                status = StatusMix(statusTotals),
                latency_ms = Percentiles(allLatency),
                ttft_ms = allTtft.TotalCount > 0 ? Percentiles(allTtft) : null,
                routes,
                series,
                policies,
                clusters,
                shaping_redis = new { configured = !string.IsNullOrWhiteSpace(state.Options.Redis), fallback = _shaping.Redis.FallingBack },
            };
        }
    }

    private static int[] Ordered(int[] ring, long now)
    {
        var list = new int[(int)Math.Min(History, now + 1)];
        for (var i = 0; i < list.Length; i++)
        {
            list[i] = ring[(now - list.Length + 1 + i) % History];
        }

        return list;
    }

    private static readonly string[] StatusNames = ["2xx", "3xx", "4xx", "429", "499", "5xx", "503", "other"];

    private static int StatusIndex(string code) => code switch
    {
        "429" => 3,
        "499" => 4,
        "503" => 6,
        _ when code.Length == 3 && code[0] == '2' => 0,
        _ when code.Length == 3 && code[0] == '3' => 1,
        _ when code.Length == 3 && code[0] == '4' => 2,
        _ when code.Length == 3 && code[0] == '5' => 5,
        _ => 7,
    };

    private static Dictionary<string, long> StatusMix(long[] counts)
    {
        var mix = new Dictionary<string, long>(StringComparer.Ordinal);
        for (var i = 0; i < StatusNames.Length; i++)
        {
            if (counts[i] > 0)
            {
                mix[StatusNames[i]] = counts[i];
            }
        }

        return mix;
    }

    private static object Percentiles(HistogramBase h) => new { p50 = Ms(h, 50), p95 = Ms(h, 95), p99 = Ms(h, 99), count = h.TotalCount };

    private static double Ms(HistogramBase? h, double percentile) =>
        h is null || h.TotalCount == 0 ? 0 : Math.Round(h.GetValueAtPercentile(percentile) / 1000.0, 2);

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

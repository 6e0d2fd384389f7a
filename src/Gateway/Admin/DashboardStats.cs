using System.Diagnostics.Metrics;
using Gateway.Shaping;
using Gateway.Telemetry;
using HdrHistogram;

namespace Gateway.Admin;

/// <summary>
/// The numbers behind the dashboard, read from the same instruments that <c>/metrics</c> exports (a
/// <see cref="MeterListener"/> on the gateway's meter: <c>gateway.requests</c>, <c>gateway.request.duration</c>,
/// <c>gateway.ttft</c>, <c>gateway.shaping.decisions</c>), kept per second for the last two minutes: requests/s, status
/// mix, latency and time-to-first-token percentiles (HdrHistogram, 2 significant digits) per route and listener over a
/// 10-second window, policy decisions, and each cluster's in-flight count, queue and limit over time. It listens only
/// once the dashboard has asked for a snapshot.
/// </summary>
internal sealed partial class DashboardStats : IDisposable
{
    /// <summary>Seconds of history kept.</summary>
    public const int History = 120;

    /// <summary>Seconds the per-route percentiles cover.</summary>
    public const int Window = 10;

    private readonly MeterListener _listener = new();
    private readonly TimeProvider _time;
    private readonly ShapingRuntime _shaping;
    private readonly long _start;
    private readonly Lock _lock = new();
    private readonly Dictionary<(string Listener, string Route), RouteStats> _routes = [];
    private readonly Dictionary<string, PolicyStats> _policies = new(StringComparer.Ordinal);
    private readonly SecondPoint[] _series = new SecondPoint[History];
    private readonly Dictionary<string, int[]> _limits = new(StringComparer.Ordinal);
    private long _second;

    public DashboardStats(GatewayMetrics metrics, ShapingRuntime shaping, TimeProvider time)
    {
        _time = time;
        _shaping = shaping;
        _start = time.GetTimestamp();
        var meter = metrics.Meter;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument.Meter, meter)
                && instrument.Name is "gateway.requests" or "gateway.request.duration" or "gateway.ttft" or "gateway.shaping.decisions")
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>(OnLong);
        _listener.SetMeasurementEventCallback<double>(OnDouble);
    }

    /// <summary>
    /// Starts listening at the first snapshot (someone opened the dashboard), so that a gateway nobody watches pays
    /// nothing per request for it; the history starts then.
    /// </summary>
    private void EnsureListening()
    {
        if (Interlocked.Exchange(ref _listening, 1) == 0)
        {
            _listeningSince = _time.GetTimestamp();
            _listener.Start();
        }
    }

    private int _listening;
    private long _listeningSince;

    private void OnLong(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        if (instrument.Name == "gateway.requests")
        {
            string listener = "?", route = "?", status = "other";
            foreach (var t in tags)
            {
                switch (t.Key)
                {
                    case "listener": listener = t.Value as string ?? "?"; break;
                    case "route": route = t.Value as string ?? "?"; break;
                    case "status_code": status = t.Value as string ?? "other"; break;
                }
            }

            if (listener == "admin")
            {
                return; // the dashboard's own polling is not traffic
            }

            lock (_lock)
            {
                var second = Advance();
                var r = Route(listener, route);
                r.Total += value;
                r.Status[StatusIndex(status)] += value;
                r.PerSecond[second % Window] += value;
                ref var p = ref _series[second % History];
                p.Requests += value;
                if (status is "429" or "503")
                {
                    p.Refused += value;
                }
                else if (status.StartsWith('5'))
                {
                    p.Errors += value;
                }
            }
        }
        else if (instrument.Name == "gateway.shaping.decisions")
        {
            string policy = "?", outcome = "?";
            foreach (var t in tags)
            {
                if (t.Key == "policy")
                {
                    policy = t.Value as string ?? "?";
                }
                else if (t.Key == "outcome")
                {
                    outcome = t.Value as string ?? "?";
                }
            }

            lock (_lock)
            {
                if (!_policies.TryGetValue(policy, out var p))
                {
                    p = new PolicyStats();
                    _policies[policy] = p;
                }

                switch (outcome)
                {
                    case "admitted": p.Admitted += value; break;
                    case "refused": p.Refused += value; break;
                    case "shadow_refused": p.ShadowRefused += value; break;
                }
            }
        }
    }

    private void OnDouble(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        string listener = "?", route = "?";
        foreach (var t in tags)
        {
            if (t.Key == "listener")
            {
                listener = t.Value as string ?? "?";
            }
            else if (t.Key == "route")
            {
                route = t.Value as string ?? "?";
            }
        }

        if (listener == "admin")
        {
            return;
        }

        var micros = Math.Clamp((long)(value * 1_000_000), 1, 3_600_000_000);
        lock (_lock)
        {
            var second = Advance();
            var r = Route(listener, route);
            var slot = second % Window;
            if (instrument.Name == "gateway.ttft")
            {
                r.Ttft[slot].RecordValue(micros);
                _series[second % History].Ttft!.RecordValue(micros);
            }
            else
            {
                r.Latency[slot].RecordValue(micros);
                _series[second % History].Latency!.RecordValue(micros);
            }
        }
    }

    /// <summary>Moves the clock to the current second, clearing the slots it passes; returns the current second.</summary>
    private long Advance()
    {
        var second = (long)_time.GetElapsedTime(_start).TotalSeconds;
        if (second - _second > History)
        {
            _second = second - History; // idle for long: everything older than the history is gone anyway
        }

        while (_second < second)
        {
            // Sample the admission limits into the second that just ended.
            foreach (var (name, c) in _shaping.Current.Clusters)
            {
                if (!_limits.TryGetValue(name, out var ring))
                {
                    ring = new int[History];
                    _limits[name] = ring;
                }

                ring[_second % History] = c.Controller.Limit;
            }

            _second++;
            ref var p = ref _series[_second % History];
            p.Second = _second;
            p.Requests = p.Errors = p.Refused = 0;
            (p.Latency ??= NewHistogram()).Reset();
            (p.Ttft ??= NewHistogram()).Reset();
            foreach (var r in _routes.Values)
            {
                var slot = (int)(_second % Window);
                r.SlotSecond[slot] = _second;
                r.PerSecond[slot] = 0;
                r.Latency[slot].Reset();
                r.Ttft[slot].Reset();
            }
        }

        if (_series[second % History].Latency is null)
        {
            _series[second % History].Latency = NewHistogram();
            _series[second % History].Ttft = NewHistogram();
        }

        return second;
    }

    private RouteStats Route(string listener, string route)
    {
        if (!_routes.TryGetValue((listener, route), out var r))
        {
            r = new RouteStats();
            for (var i = 0; i < Window; i++)
            {
                r.SlotSecond[i] = -1;
            }

            r.SlotSecond[_second % Window] = _second;
            _routes[(listener, route)] = r;
        }

        return r;
    }

    private static IntHistogram NewHistogram() => new(1, 3_600_000_000, 2);

    public void Dispose() => _listener.Dispose();

    private sealed class RouteStats
    {
        public long Total;
        public readonly long[] Status = new long[StatusNames.Length];
        public readonly long[] PerSecond = new long[Window];
        public readonly long[] SlotSecond = new long[Window];
        public readonly IntHistogram[] Latency = [.. Enumerable.Range(0, Window).Select(static _ => NewHistogram())];
        public readonly IntHistogram[] Ttft = [.. Enumerable.Range(0, Window).Select(static _ => NewHistogram())];
    }

    private sealed class PolicyStats
    {
        public long Admitted;
        public long Refused;
        public long ShadowRefused;
    }

    private struct SecondPoint
    {
        public long Second;
        public long Requests;
        public long Errors;
        public long Refused;
        public IntHistogram? Latency;
        public IntHistogram? Ttft;
    }
}

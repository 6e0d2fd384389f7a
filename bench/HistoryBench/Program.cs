using System.Diagnostics.Metrics;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Running;
using Gateway.Admin.Stats;
using HdrHistogram;

BenchmarkSwitcher.FromAssembly(typeof(HistoryRecord).Assembly).Run(args);

/// <summary>
/// Nanoseconds per exchange of the dashboard's bookkeeping: <see cref="TrafficHistory.Record"/> (always on, no lock)
/// against a model of the <c>MeterListener</c> it replaced (on only while a dashboard was open; every measurement
/// callback took one global lock and recorded into HdrHistogram), on one thread and on two threads at once (the
/// machine's two cores). Each invocation records <see cref="PerThread"/> exchanges per thread.
/// </summary>
[MemoryDiagnoser]
public class HistoryRecord
{
    private const int PerThread = 20_000;

    private TrafficHistory _history = null!;
    private OldListener _old = null!;
    private readonly ExchangeSample _sample = new("http", "openai", "acme", 200, 0.012, 0.004, null, TimeSpan.FromMilliseconds(1), 12, 16);

    [GlobalSetup]
    public void Setup()
    {
        _history = new TrafficHistory(TimeProvider.System, 3600, shaping: null);
        _old = new OldListener();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _history.Dispose();
        _old.Dispose();
    }

    [Benchmark(OperationsPerInvoke = PerThread)]
    public void History_one_thread() => RecordMany();

    [Benchmark(OperationsPerInvoke = 2 * PerThread)]
    public void History_two_threads() => Parallel.For(0, 2, new ParallelOptions { MaxDegreeOfParallelism = 2 }, _ => RecordMany());

    [Benchmark(Baseline = true, OperationsPerInvoke = PerThread)]
    public void Old_listener_one_thread() => _old.RecordMany(PerThread);

    [Benchmark(OperationsPerInvoke = 2 * PerThread)]
    public void Old_listener_two_threads() => Parallel.For(0, 2, new ParallelOptions { MaxDegreeOfParallelism = 2 }, _ => _old.RecordMany(PerThread));

    private void RecordMany()
    {
        for (var i = 0; i < PerThread; i++)
        {
            _history.Record(_sample);
        }
    }

    /// <summary>
    /// The replaced design, cut to its cost: a counter and two histograms on a meter, a <see cref="MeterListener"/> whose
    /// callbacks read the tags and update a per-route entry, per-second counters and HdrHistograms under one lock.
    /// </summary>
    public sealed class OldListener : IDisposable
    {
        private readonly Meter _meter = new("HistoryBench.Old");
        private readonly Counter<long> _requests;
        private readonly Histogram<double> _duration;
        private readonly Histogram<double> _ttft;
        private readonly MeterListener _listener = new();
        private readonly Lock _lock = new();
        private readonly Dictionary<(string, string), long[]> _routes = [];
        private readonly IntHistogram _latency = new(1, 3_600_000_000, 2);
        private readonly IntHistogram _ttftHistogram = new(1, 3_600_000_000, 2);

        public OldListener()
        {
            _requests = _meter.CreateCounter<long>("gateway.requests");
            _duration = _meter.CreateHistogram<double>("gateway.request.duration");
            _ttft = _meter.CreateHistogram<double>("gateway.ttft");
            _listener.InstrumentPublished = (i, l) =>
            {
                if (ReferenceEquals(i.Meter, _meter))
                {
                    l.EnableMeasurementEvents(i);
                }
            };
            _listener.SetMeasurementEventCallback<long>((i, v, tags, _) =>
            {
                string listener = "?", route = "?";
                foreach (var t in tags)
                {
                    if (t.Key == "listener") listener = (string)t.Value!;
                    else if (t.Key == "route") route = (string)t.Value!;
                }

                lock (_lock)
                {
                    if (!_routes.TryGetValue((listener, route), out var r))
                    {
                        _routes[(listener, route)] = r = new long[10];
                    }

                    r[0] += v;
                    r[1] += v;
                }
            });
            _listener.SetMeasurementEventCallback<double>((i, v, tags, _) =>
            {
                string listener = "?", route = "?";
                foreach (var t in tags)
                {
                    if (t.Key == "listener") listener = (string)t.Value!;
                    else if (t.Key == "route") route = (string)t.Value!;
                }

                lock (_lock)
                {
                    _ = _routes.TryGetValue((listener, route), out long[]? _);
                    (i.Name == "gateway.ttft" ? _ttftHistogram : _latency).RecordValue(Math.Clamp((long)(v * 1_000_000), 1, 3_600_000_000));
                }
            });
            _listener.Start();
        }

        public void RecordMany(int n)
        {
            for (var i = 0; i < n; i++)
            {
                var tags = new System.Diagnostics.TagList { { "listener", "http" }, { "route", "openai" }, { "status_class", "2xx" }, { "model", "(none)" } };
                _duration.Record(0.012, tags);
                _ttft.Record(0.004, tags);
                tags.Add("status_code", "200");
                _requests.Add(1, tags);
            }
        }

        public void Dispose()
        {
            _listener.Dispose();
            _meter.Dispose();
        }
    }
}

using System.Collections.Concurrent;
using Gateway.Shaping;

namespace Gateway.Admin.Stats;

/// <summary>
/// The dashboard's memory of the traffic since start-up, fed by <see cref="Exchange.ExchangeCompletion"/> with one
/// <see cref="Record"/> call per exchange (the admin listener's own requests are left out) and always on, whether or not
/// anyone watches:
/// <list type="bullet">
/// <item>a ring of one-second buckets (<see cref="SecondRing"/>, <see cref="AdminOptions.HistorySeconds"/> long, an hour by
/// default): requests, status classes, refusals by limit, latency, TTFT and admission-queue-wait histograms, tokens;</item>
/// <item>running totals since start-up, for the whole gateway, per route and listener, and per tenant, each with a
/// ten-second ring for its recent rate and percentiles;</item>
/// <item>each admission cluster's queue depth, in-flight count and limit, sampled once a second by a timer.</item>
/// </list>
/// The request path takes no lock: each counter is one <see cref="Interlocked"/> add, a new second's bucket is swapped
/// in with a compare-exchange, and the per-route and per-tenant entries are found in <see cref="ConcurrentDictionary{TKey,TValue}"/>s
/// (lock-free reads). Memory: about 1.6 KB per second that had traffic (at most about 6 MB for the default hour;
/// a second without traffic holds nothing), about 17 KB per route and per tenant (at most <see cref="MaxKeys"/> of
/// each; further ones count as <c>(other)</c>), 12 bytes per second per admission cluster.
/// </summary>
internal sealed class TrafficHistory : IDisposable
{
    /// <summary>Seconds the per-route and per-tenant recent figures cover.</summary>
    public const int Window = 10;

    /// <summary>Distinct routes (and, separately, tenants) kept; any further one counts as <c>(other)</c>.</summary>
    public const int MaxKeys = 1000;

    private readonly TimeProvider _time;
    private readonly ShapingRuntime? _shaping;
    private readonly ITimer? _sampler;
    private readonly ConcurrentDictionary<(string Listener, string Route), KeyStats> _routes = new();
    private readonly ConcurrentDictionary<string, KeyStats> _tenants = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ClusterGauges> _clusters = new(StringComparer.Ordinal);
    private long _late;
    private long _sampleFailures;

    // What each running total is read for (each part left out saves the request path its atomic adds): the gateway's
    // and a route's totals show counts (the gateway's also tokens and refusals by limit; latency comes from the ring), a
    // tenant's everything but latency; the ten-second rings give a route its rate and percentiles, a tenant its rate.
    private const BucketParts TotalParts = BucketParts.Counts | BucketParts.Tokens | BucketParts.Limits;
    private const BucketParts RouteParts = BucketParts.Counts;
    private const BucketParts TenantParts = BucketParts.Counts | BucketParts.Tokens | BucketParts.Limits | BucketParts.Queue;

    public TrafficHistory(TimeProvider time, AdminOptions options, ShapingRuntime shaping)
        : this(time, options.HistorySeconds, shaping)
    {
    }

    /// <summary>A history of <paramref name="historySeconds"/> seconds; without <paramref name="shaping"/>, nothing is sampled (tests).</summary>
    internal TrafficHistory(TimeProvider time, int historySeconds, ShapingRuntime? shaping)
    {
        _time = time;
        _shaping = shaping;
        StartTimestamp = time.GetTimestamp();
        StartedAt = time.GetUtcNow();
        BootId = Guid.NewGuid().ToString("N")[..12];
        Ring = new SecondRing(historySeconds);
        _sampler = shaping is null ? null : time.CreateTimer(static s => ((TrafficHistory)s!).Sample(), this, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }

    /// <summary>Monotonic timestamp of start-up (<see cref="TimeProvider.GetTimestamp"/>): second 0 of the ring.</summary>
    public long StartTimestamp { get; }

    /// <summary>Wall-clock time of start-up.</summary>
    public DateTimeOffset StartedAt { get; }

    /// <summary>A random id of this process's history, so that a page can tell that the gateway restarted.</summary>
    public string BootId { get; }

    /// <summary>The per-second buckets.</summary>
    public SecondRing Ring { get; }

    /// <summary>Every exchange since start-up.</summary>
    public SecondBucket Total { get; } = new(-1);

    /// <summary>Exchanges counted in the totals but not in the ring because their second had already left it (a writer a whole ring late).</summary>
    public long Late => Volatile.Read(ref _late);

    /// <summary>Once-a-second samples of the admission clusters that failed (and were skipped).</summary>
    public long SampleFailures => Volatile.Read(ref _sampleFailures);

    /// <summary>The second since start-up it is now.</summary>
    public long Now => (long)_time.GetElapsedTime(StartTimestamp).TotalSeconds;

    /// <summary>Per route and listener.</summary>
    public IReadOnlyDictionary<(string Listener, string Route), KeyStats> Routes => _routes;

    /// <summary>Per tenant (<c>(none)</c>: no tenant).</summary>
    public IReadOnlyDictionary<string, KeyStats> Tenants => _tenants;

    /// <summary>Per admission cluster, the sampled gauges.</summary>
    public IReadOnlyDictionary<string, ClusterGauges> Clusters => _clusters;

    /// <summary>Counts a completed exchange; called once per exchange by completion. Never throws, never waits.</summary>
    public void Record(in ExchangeSample sample)
    {
        if (sample.Listener == "admin")
        {
            return; // the dashboard's own polling, /metrics scrapes and health checks are not traffic
        }

        var second = Now;
        if (Ring.GetOrAdd(second) is { } bucket)
        {
            bucket.Add(sample);
        }
        else
        {
            Interlocked.Increment(ref _late);
        }

        Total.Add(sample, TotalParts);
        var route = _routes.TryGetValue((sample.Listener, sample.Route), out var r) ? r
            : _routes.Count < MaxKeys ? _routes.GetOrAdd((sample.Listener, sample.Route), static _ => new KeyStats())
            : _routes.GetOrAdd((sample.Listener, "(other)"), static _ => new KeyStats());
        route.Add(second, sample, RouteParts, BucketParts.Counts | BucketParts.Latency);
        var name = sample.Tenant ?? "(none)";
        var tenant = _tenants.TryGetValue(name, out var t) ? t
            : _tenants.Count < MaxKeys ? _tenants.GetOrAdd(name, static _ => new KeyStats())
            : _tenants.GetOrAdd("(other)", static _ => new KeyStats());
        tenant.Add(second, sample, TenantParts, BucketParts.Counts);
    }

    /// <summary>Samples each admission cluster's queue, in-flight count and limit into the current second (the timer's callback).</summary>
    internal void Sample()
    {
        if (_shaping is null)
        {
            return;
        }

        try
        {
            var second = Now;
            foreach (var (name, cluster) in _shaping.Current.Clusters)
            {
                var gauges = _clusters.GetOrAdd(name, static (_, length) => new ClusterGauges(length), Ring.Length);
                var c = cluster.Controller;
                gauges.Set(second, c.Queued, c.InFlight, c.Limit);
            }
        }
        catch (Exception)
        {
            // A timer callback must never throw (it would end the process); a configuration being swapped in is the
            // expected case, and the next second samples the new one. Counted, never silent.
            Interlocked.Increment(ref _sampleFailures);
        }
    }

    public void Dispose() => _sampler?.Dispose();

    /// <summary>A route's or a tenant's running totals since start-up, and its last <see cref="Window"/> seconds.</summary>
    internal sealed class KeyStats
    {
        /// <summary>Since start-up.</summary>
        public SecondBucket Total { get; } = new(-1);

        /// <summary>The last seconds, for the recent rate and percentiles.</summary>
        public SecondRing Recent { get; } = new(Window);

        public void Add(long second, in ExchangeSample sample, BucketParts total, BucketParts recent)
        {
            Total.Add(sample, total);
            Recent.GetOrAdd(second)?.Add(sample, recent);
        }
    }

    /// <summary>One admission cluster's gauges, one sample per second (a single writer: the sampling timer).</summary>
    internal sealed class ClusterGauges(int length)
    {
        private readonly long[] _second = CreateStamps(length);
        private readonly int[] _queued = new int[length];
        private readonly int[] _inFlight = new int[length];
        private readonly int[] _limit = new int[length];

        public void Set(long second, int queued, int inFlight, int limit)
        {
            var i = (int)(second % _second.Length);
            _queued[i] = queued;
            _inFlight[i] = inFlight;
            _limit[i] = limit;
            Volatile.Write(ref _second[i], second);
        }

        /// <summary>The sample of <paramref name="second"/>, or null when none was taken then.</summary>
        public (int Queued, int InFlight, int Limit)? Get(long second)
        {
            if (second < 0)
            {
                return null;
            }

            var i = (int)(second % _second.Length);
            return Volatile.Read(ref _second[i]) == second ? (_queued[i], _inFlight[i], _limit[i]) : null;
        }

        private static long[] CreateStamps(int length)
        {
            var stamps = new long[length];
            Array.Fill(stamps, -1);
            return stamps;
        }
    }
}

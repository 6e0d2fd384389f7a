using HdrHistogram;

namespace Replay.Measurement;

/// <summary>
/// Everything measured during a run, recorded as requests are sent and complete.
/// </summary>
/// <remarks>
/// <para>Latency is measured from each request's <em>intended</em> send time (its place in the schedule), not from
/// when it actually left: if the target (or this process) stalls, every request that should have been sent meanwhile
/// is charged the wait. This is the coordinated-omission correction of wrk2 and of HdrHistogram's
/// <c>RecordValueWithExpectedInterval</c>, done exactly rather than by back-filling: the schedule is known, so each
/// request carries its own intended time. <see cref="ServiceTime"/> (from the actual send) is kept beside it to show
/// what an uncorrected tool would report; <c>schedule_lag</c> = actual − intended send time is the part of the
/// latency this generator is responsible for.</para>
/// <para>Thread-safe: one lock guards all state; each request takes it twice (send, completion) for a few hundred
/// nanoseconds.</para>
/// </remarks>
internal sealed partial class RunMetrics
{
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly Slo[] _slos;
    private readonly long[] _sloMet;
    private readonly long[] _failuresByKind = new long[6];
    private readonly Dictionary<string, Group> _byStatus = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Group> _byRoute = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Group> _refusedByLimit = new(StringComparer.Ordinal);
    private readonly List<SecondBucket> _series = [];
    private readonly SecondHistograms _latencySeconds;
    private readonly SecondHistograms _ttftSeconds;
    private readonly SecondHistograms _itlSeconds;

    /// <summary>The three per-second series (latency, TTFT, inter-token time), in the order exports write them.</summary>
    private readonly SecondHistograms[] _perSecond;
    private long _startTimestamp;

    /// <summary>Creates the metrics of a run.</summary>
    /// <param name="time">The clock.</param>
    /// <param name="slos">The SLOs goodput is judged against.</param>
    /// <param name="keepSeconds">Keep each second's latency histogram (for <see cref="Export"/> and <see cref="Merge"/>).</param>
    public RunMetrics(TimeProvider time, IReadOnlyList<Slo> slos, bool keepSeconds = false)
    {
        _time = time;
        _slos = [.. slos];
        _sloMet = new long[_slos.Length];
        _latencySeconds = new SecondHistograms(keepSeconds, (i, h) =>
        {
            var b = Bucket(i);
            b.P50 = Histograms.Ms(h, 50);
            b.P95 = Histograms.Ms(h, 95);
            b.P99 = Histograms.Ms(h, 99);
            b.Max = Histograms.MaxMs(h);
        });
        _ttftSeconds = new SecondHistograms(keepSeconds, (i, h) =>
        {
            var b = Bucket(i);
            b.TtftP50 = Histograms.Ms(h, 50);
            b.TtftP95 = Histograms.Ms(h, 95);
        });
        _itlSeconds = new SecondHistograms(keepSeconds, (i, h) =>
        {
            var b = Bucket(i);
            b.ItlP50 = Histograms.Ms(h, 50);
            b.ItlP95 = Histograms.Ms(h, 95);
        });
        _perSecond = [_latencySeconds, _ttftSeconds, _itlSeconds];
    }

    /// <summary>The label of refusals whose answer named no limit.</summary>
    public const string UnnamedLimit = "(not named)";

    /// <summary>Counts and one histogram of a status or a route.</summary>
    internal sealed class Group
    {
        public long Count;
        public long Failures;
        public readonly LongHistogram Latency = Histograms.Create();
    }

    /// <summary>One second of the run (by intended time for <see cref="Intended"/>, by send time for <see cref="Sent"/>, by completion time for the rest).</summary>
    internal sealed class SecondBucket
    {
        public long Intended;
        public long Sent;
        public long Completed;
        public long Failures;
        public long Refused;
        public long StatusErrors;
        public long Timeouts;
        public long ConnectionErrors;
        public long Tokens;
        public long Good;
        public double P50;
        public double P95;
        public double P99;
        public double Max;
        public double LagMax;
        public double TtftP50;
        public double TtftP95;
        public double ItlP50;
        public double ItlP95;

        /// <summary>Refusals of this second by the limit that refused them; null while there were none.</summary>
        public Dictionary<string, long>? RefusedByLimit;
    }

    /// <summary>Latency from the intended send time, every request.</summary>
    public LongHistogram Latency { get; } = Histograms.Create();

    /// <summary>Latency of successful requests only.</summary>
    public LongHistogram SuccessLatency { get; } = Histograms.Create();

    /// <summary>Latency from the actual send (what a tool without coordinated-omission correction reports).</summary>
    public LongHistogram ServiceTime { get; } = Histograms.Create();

    /// <summary>Actual − intended send time.</summary>
    public LongHistogram ScheduleLag { get; } = Histograms.Create();

    /// <summary>Time to first token (streamed requests), from the intended send time.</summary>
    public LongHistogram Ttft { get; } = Histograms.Create();

    /// <summary>Gaps between consecutive tokens of a stream.</summary>
    public LongHistogram InterToken { get; } = Histograms.Create();

    /// <summary>Per-stream decode rate, tokens/s × 1000 (milli-tokens per second, so the histogram keeps precision).</summary>
    public LongHistogram StreamTokensPerSecond { get; } = Histograms.Create();

    /// <summary>Requests whose intended time has come (<see cref="RecordStart"/>).</summary>
    public long Intended { get; private set; }

    /// <summary>Requests sent.</summary>
    public long Sent { get; private set; }

    /// <summary>Requests completed in any way.</summary>
    public long Completed { get; private set; }

    /// <summary>Requests that failed.</summary>
    public long Failures { get; private set; }

    /// <summary>Output tokens received.</summary>
    public long OutputTokens { get; private set; }

    /// <summary>WebSocket messages sent (a turn's message, a frames-mode connection's client messages).</summary>
    public long WebSocketMessagesSent { get; private set; }

    /// <summary>WebSocket messages received from servers (whole messages).</summary>
    public long WebSocketMessagesReceived { get; private set; }

    /// <summary>Stream events that could not be parsed (neither JSON nor <c>[DONE]</c>), over all responses.</summary>
    public long UnparseableEvents { get; private set; }

    /// <summary>The first unparseable event's data (shortened), or null.</summary>
    public string? FirstUnparseable { get; private set; }

    /// <summary>Requests that met every SLO (and succeeded).</summary>
    public long Good { get; private set; }

    /// <summary>Requests compared with the recording.</summary>
    public long Compared { get; private set; }

    /// <summary>Compared requests whose status differed from the recorded one.</summary>
    public long StatusMismatches { get; private set; }

    /// <summary>Compared requests whose body differed from the recorded one.</summary>
    public long BodyDifferences { get; private set; }

    /// <summary>Timestamp of the run's start (offset 0 of the schedule).</summary>
    public long StartTimestamp => _startTimestamp;

    /// <summary>Latest intended send time seen.</summary>
    public long LastIntendedTimestamp { get; private set; }

    /// <summary>Latest actual send time seen.</summary>
    public long LastSentTimestamp { get; private set; }

    /// <summary>Latest completion time seen.</summary>
    public long LastCompletedTimestamp { get; private set; }

    /// <summary>The SLOs.</summary>
    public IReadOnlyList<Slo> Slos => _slos;

    /// <summary>Marks the start of the run.</summary>
    public void Start(long startTimestamp)
    {
        _startTimestamp = startTimestamp;
        LastIntendedTimestamp = LastSentTimestamp = LastCompletedTimestamp = startTimestamp;
    }

    /// <summary>Microseconds between two timestamps.</summary>
    public long Micros(long from, long to) => (long)_time.GetElapsedTime(from, to).Ticks / 10;

    /// <summary>Seconds from the start to <paramref name="timestamp"/>.</summary>
    public double SecondsSinceStart(long timestamp) => _time.GetElapsedTime(_startTimestamp, timestamp).TotalSeconds;

    /// <summary>A request intended for <paramref name="intendedTimestamp"/> left at <paramref name="sentTimestamp"/>.</summary>
    public void RecordStart(long intendedTimestamp, long sentTimestamp)
    {
        var lag = Math.Max(0, Micros(intendedTimestamp, sentTimestamp));
        lock (_gate)
        {
            Intended++;
            Sent++;
            if (intendedTimestamp > LastIntendedTimestamp)
            {
                LastIntendedTimestamp = intendedTimestamp;
            }

            if (sentTimestamp > LastSentTimestamp)
            {
                LastSentTimestamp = sentTimestamp;
            }

            Bucket(intendedTimestamp).Intended++;
            Histograms.Record(ScheduleLag, lag);
            var bucket = Bucket(sentTimestamp);
            bucket.Sent++;
            var lagMs = lag / 1000.0;
            if (lagMs > bucket.LagMax)
            {
                bucket.LagMax = lagMs;
            }
        }
    }

    /// <summary>A request completed (or failed).</summary>
    /// <param name="outcome">How it ended.</param>
    /// <param name="intendedTimestamp">Its place in the schedule.</param>
    /// <param name="sentTimestamp">When it actually left.</param>
    /// <param name="route">Its route label.</param>
    /// <param name="tokenTimestamps">Arrival times of its stream's tokens (empty when not streamed).</param>
    public void RecordCompleted(in Outcome outcome, long intendedTimestamp, long sentTimestamp, string route, ReadOnlySpan<long> tokenTimestamps)
    {
        var latency = Micros(intendedTimestamp, outcome.EndTimestamp);
        var service = Micros(sentTimestamp, outcome.EndTimestamp);
        var failed = outcome.Failure != FailureKind.None;
        var ttft = outcome.FirstTokenTimestamp != 0 ? Micros(intendedTimestamp, outcome.FirstTokenTimestamp) : -1;
        long tpot = -1;
        if (outcome.Tokens >= 2 && outcome.LastTokenTimestamp > outcome.FirstTokenTimestamp && outcome.FirstTokenTimestamp != 0)
        {
            tpot = Micros(outcome.FirstTokenTimestamp, outcome.LastTokenTimestamp) / (outcome.Tokens - 1);
        }

        var second = SecondIndex(outcome.EndTimestamp);
        lock (_gate)
        {
            Completed++;
            if (outcome.EndTimestamp > LastCompletedTimestamp)
            {
                LastCompletedTimestamp = outcome.EndTimestamp;
            }

            Histograms.Record(Latency, latency);
            Histograms.Record(ServiceTime, service);
            _failuresByKind[(int)outcome.Failure]++;
            if (failed)
            {
                Failures++;
            }
            else
            {
                Histograms.Record(SuccessLatency, latency);
            }

            var status = Get(_byStatus, outcome.StatusKey);
            status.Count++;
            if (failed)
            {
                status.Failures++;
            }

            Histograms.Record(status.Latency, latency);
            var byRoute = Get(_byRoute, route);
            byRoute.Count++;
            if (failed)
            {
                byRoute.Failures++;
            }

            Histograms.Record(byRoute.Latency, latency);
            OutputTokens += outcome.Tokens;
            WebSocketMessagesSent += outcome.MessagesSent;
            WebSocketMessagesReceived += outcome.MessagesReceived;
            if (outcome.UnparseableEvents > 0)
            {
                UnparseableEvents += outcome.UnparseableEvents;
                FirstUnparseable ??= outcome.FirstUnparseable;
            }

            if (outcome.Streamed && !failed)
            {
                if (ttft >= 0)
                {
                    Histograms.Record(Ttft, ttft);
                    _ttftSeconds.Record(second, ttft);
                }

                for (var i = 1; i < tokenTimestamps.Length; i++)
                {
                    var gap = Micros(tokenTimestamps[i - 1], tokenTimestamps[i]);
                    Histograms.Record(InterToken, gap);
                    _itlSeconds.Record(second, gap);
                }

                if (tpot > 0)
                {
                    Histograms.Record(StreamTokensPerSecond, 1_000_000_000 / tpot);
                }
            }

            if (!failed)
            {
                var good = true;
                for (var i = 0; i < _slos.Length; i++)
                {
                    var slo = _slos[i];
                    var value = slo.Metric switch
                    {
                        SloMetric.Ttft => ttft >= 0 ? ttft : latency,
                        SloMetric.Itl => Math.Max(tpot, 0),
                        _ => latency,
                    };
                    if (slo.Meets(value))
                    {
                        _sloMet[i]++;
                    }
                    else
                    {
                        good = false;
                    }
                }

                if (good)
                {
                    Good++;
                    Bucket(outcome.EndTimestamp).Good++;
                }
            }

            if (outcome.StatusComparison != 0)
            {
                Compared++;
                if (outcome.StatusComparison == 2)
                {
                    StatusMismatches++;
                }

                if (outcome.BodyComparison == 2)
                {
                    BodyDifferences++;
                }
            }

            var bucket = Bucket(second);
            bucket.Completed++;
            bucket.Tokens += outcome.Tokens;
            if (failed)
            {
                bucket.Failures++;
                switch (outcome.Failure)
                {
                    case FailureKind.Refused:
                        bucket.Refused++;
                        var limit = outcome.Limit ?? UnnamedLimit;
                        var byLimit = Get(_refusedByLimit, limit);
                        byLimit.Count++;
                        byLimit.Failures++;
                        Histograms.Record(byLimit.Latency, latency);
                        bucket.RefusedByLimit ??= new Dictionary<string, long>(StringComparer.Ordinal);
                        bucket.RefusedByLimit[limit] = bucket.RefusedByLimit.GetValueOrDefault(limit) + 1;
                        break;
                    case FailureKind.Timeout:
                        bucket.Timeouts++;
                        break;
                    case FailureKind.Connection:
                        bucket.ConnectionErrors++;
                        break;
                    default:
                        bucket.StatusErrors++;
                        break;
                }
            }

            _latencySeconds.Record(second, latency);
        }
    }

    /// <summary>Failures of one kind.</summary>
    public long FailuresOf(FailureKind kind)
    {
        lock (_gate)
        {
            return _failuresByKind[(int)kind];
        }
    }

    /// <summary>Requests that met SLO <paramref name="index"/>.</summary>
    public long SloMet(int index)
    {
        lock (_gate)
        {
            return _sloMet[index];
        }
    }

    /// <summary>A copy of the per-status groups.</summary>
    public IReadOnlyList<KeyValuePair<string, Group>> ByStatus()
    {
        lock (_gate)
        {
            return [.. _byStatus.OrderBy(static p => p.Key, StringComparer.Ordinal)];
        }
    }

    /// <summary>A copy of the refusals by the limit that refused them (count and latency), largest first.</summary>
    public IReadOnlyList<KeyValuePair<string, Group>> RefusedByLimit()
    {
        lock (_gate)
        {
            return [.. _refusedByLimit.OrderByDescending(static p => p.Value.Count).ThenBy(static p => p.Key, StringComparer.Ordinal)];
        }
    }

    /// <summary>A copy of the per-route groups.</summary>
    public IReadOnlyList<KeyValuePair<string, Group>> ByRoute()
    {
        lock (_gate)
        {
            return [.. _byRoute.OrderBy(static p => p.Key, StringComparer.Ordinal)];
        }
    }

    /// <summary>The per-second series; closes the current second first. Call once the run is over.</summary>
    public IReadOnlyList<SecondBucket> FinishSeries()
    {
        lock (_gate)
        {
            foreach (var perSecond in _perSecond)
            {
                perSecond.CloseAll();
            }

            return [.. _series];
        }
    }

    /// <summary>Live figures for the console.</summary>
    public Progress Snapshot(long now)
    {
        lock (_gate)
        {
            var second = SecondIndex(now);
            var last = second >= 1 && second - 1 < _series.Count ? _series[second - 1] : null;
            return new Progress(
                SecondsSinceStart(now),
                Intended,
                Sent,
                Completed,
                Failures,
                last?.Sent ?? 0,
                second >= 1 && _latencySeconds.Held.TryGetValue(second - 1, out var open) ? Histograms.Ms(open, 95) : last?.P95 ?? Histograms.Ms(Latency, 95),
                Histograms.Ms(ScheduleLag, 99));
        }
    }

    /// <summary>Figures for the live console.</summary>
    internal readonly record struct Progress(double Elapsed, long Intended, long Sent, long Completed, long Failures, long RateLastSecond, double P95LastSecondMs, double LagP99Ms);

    private static Group Get(Dictionary<string, Group> groups, string key)
    {
        if (!groups.TryGetValue(key, out var group))
        {
            groups[key] = group = new Group();
        }

        return group;
    }

    private int SecondIndex(long timestamp) => timestamp <= _startTimestamp ? 0 : (int)Math.Min(int.MaxValue - 1, Math.Floor(SecondsSinceStart(timestamp)));

    private SecondBucket Bucket(long timestamp) => Bucket(SecondIndex(timestamp));

    private SecondBucket Bucket(int index)
    {
        while (_series.Count <= index)
        {
            _series.Add(new SecondBucket());
        }

        return _series[index];
    }
}

using System.Collections.Concurrent;
using System.Globalization;

namespace Gateway.Shaping.Policies;

/// <summary>
/// A refundable per-partition rate counter on a <see cref="TimeProvider"/>'s monotonic clock: admits and charges, or
/// refuses with the exact time until enough permits free; gives a charge back (<see cref="Refund"/>) when a later step
/// refused the request. System.Threading.RateLimiting's limiters can do neither (a fixed window reports the whole window
/// as its RetryAfter, and no limiter takes a permit back), which is why the local rate kinds use these.
/// </summary>
internal interface IRateCounter
{
    /// <summary>Admits and charges <paramref name="cost"/>, or refuses with the time until it would be admitted.</summary>
    /// <returns>The verdict, the wait, the header figures, and the mark of the charge (its window or segment).</returns>
    (bool Admitted, TimeSpan RetryAfter, RateInfo Info, string? Mark) TryAcquire(string partition, long cost);

    /// <summary>Gives back <paramref name="cost"/> charged under <paramref name="mark"/>, if that window still counts.</summary>
    void Refund(string partition, long cost, string? mark);

    /// <summary>Partitions held in memory now.</summary>
    int Partitions { get; }

    /// <summary>Forgets every partition that counts nothing any more (run once a minute by <see cref="ShapingRuntime"/>, and by acquires).</summary>
    void EvictIdle();
}

/// <summary>
/// Shared partition bookkeeping: states per partition, idle ones forgotten at most once a minute (on an acquire, and by
/// <see cref="EvictIdle"/> from a timer, so a quiet gateway gives the memory back too). A state is removed under its
/// lock and marked, so an acquire that found it just before retries with a fresh one instead of counting in a state
/// nobody sees (as System.Threading.RateLimiting's DefaultPartitionedRateLimiter never uses a disposed partition).
/// </summary>
internal abstract class PartitionedCounter<TState> : IRateCounter
    where TState : PartitionState, new()
{
    private readonly ConcurrentDictionary<string, TState> _states = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private long _lastSweep;

    protected PartitionedCounter(TimeProvider time) => _time = time;

    protected double NowMs => _time.GetTimestamp() * 1000.0 / _time.TimestampFrequency;

    public (bool Admitted, TimeSpan RetryAfter, RateInfo Info, string? Mark) TryAcquire(string partition, long cost)
    {
        var now = NowMs;
        Sweep(now, force: false);
        while (true)
        {
            var state = _states.GetOrAdd(partition, static _ => new TState());
            lock (state)
            {
                if (!state.Evicted)
                {
                    return Acquire(state, now, cost);
                }
            }
        }
    }

    public int Partitions => _states.Count;

    public void EvictIdle() => Sweep(NowMs, force: true);

    public void Refund(string partition, long cost, string? mark)
    {
        if (mark is null || !_states.TryGetValue(partition, out var state))
        {
            return;
        }

        var at = double.Parse(mark, NumberStyles.Float, CultureInfo.InvariantCulture);
        lock (state)
        {
            Refund(state, NowMs, cost, at);
        }
    }

    protected abstract (bool Admitted, TimeSpan RetryAfter, RateInfo Info, string? Mark) Acquire(TState state, double now, long cost);

    protected abstract void Refund(TState state, double now, long cost, double mark);

    /// <summary>Whether a partition's state counts nothing any more (then it may be forgotten).</summary>
    protected abstract bool IsIdle(TState state, double now);

    protected static string Mark(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    protected static TimeSpan Ms(double ms) => TimeSpan.FromMilliseconds(Math.Max(0, ms));

    private void Sweep(double now, bool force)
    {
        var last = Interlocked.Read(ref _lastSweep);
        if ((!force && now - last < 60_000) || Interlocked.CompareExchange(ref _lastSweep, (long)now, last) != last)
        {
            return;
        }

        foreach (var (key, state) in _states)
        {
            lock (state)
            {
                if (IsIdle(state, now))
                {
                    state.Evicted = true;
                    _states.TryRemove(key, out _);
                }
            }
        }
    }
}

/// <summary>A partition's state; <see cref="Evicted"/> once forgotten (set under its lock).</summary>
internal abstract class PartitionState
{
    public bool Evicted;
}

/// <summary>
/// <c>limit</c> requests per <c>window</c>; a partition's window starts with its first request after the previous one
/// ended (as the fleet-wide one in <see cref="RedisLimiter"/>), so Retry-After and the reset are the time left in it.
/// </summary>
internal sealed class FixedWindowCounter(long limit, TimeSpan window, TimeProvider time) : PartitionedCounter<FixedWindowCounter.State>(time)
{
    private readonly double _windowMs = window.TotalMilliseconds;

    protected override (bool Admitted, TimeSpan RetryAfter, RateInfo Info, string? Mark) Acquire(State s, double now, long cost)
    {
        if (s.Count == 0 || now >= s.Start + _windowMs)
        {
            s.Start = now;
            s.Count = 0;
        }

        var left = Ms(s.Start + _windowMs - now);
        if (s.Count + cost > limit)
        {
            return (false, left, new RateInfo(limit, 0, left), null);
        }

        s.Count += cost;
        return (true, TimeSpan.Zero, new RateInfo(limit, limit - s.Count, left), Mark(s.Start));
    }

    protected override void Refund(State s, double now, long cost, double mark)
    {
        if (s.Start == mark && now < s.Start + _windowMs)
        {
            s.Count = Math.Max(0, s.Count - cost);
        }
    }

    protected override bool IsIdle(State s, double now) => now >= s.Start + _windowMs;

    internal sealed class State : PartitionState
    {
        public double Start;
        public long Count;
    }
}

/// <summary>
/// <c>limit</c> requests in any <c>window</c>, counted in <c>segments</c> segments (as System.Threading.RateLimiting's
/// sliding window): a request is admitted when the counts of the segments still in the window plus its cost fit the
/// limit. Refused, it is told the time until the oldest segments that free enough permits leave the window (the next
/// segment's end when the oldest one holds enough); the reset is the time until the newest charged segment leaves.
/// Segments are aligned on the counter's creation; only non-empty segments are kept.
/// </summary>
internal sealed class SlidingWindowCounter : PartitionedCounter<SlidingWindowCounter.State>
{
    private readonly long _limit;
    private readonly int _segments;
    private readonly double _segmentMs;
    private readonly double _origin;

    public SlidingWindowCounter(long limit, TimeSpan window, int segments, TimeProvider time)
        : base(time)
    {
        _limit = limit;
        _segments = segments;
        _segmentMs = window.TotalMilliseconds / segments;
        _origin = NowMs;
    }

    protected override (bool Admitted, TimeSpan RetryAfter, RateInfo Info, string? Mark) Acquire(State s, double now, long cost)
    {
        var current = (long)Math.Floor((now - _origin) / _segmentMs);
        Expire(s, current);
        long sum = 0;
        foreach (var (_, count) in s.Counts)
        {
            sum += count;
        }

        if (sum + cost > _limit)
        {
            var freed = 0L;
            var retry = _segmentMs * _segments; // cost above the limit: never (cannot happen for requests of cost 1)
            foreach (var (segment, count) in s.Counts)
            {
                freed += count;
                if (sum - freed + cost <= _limit)
                {
                    retry = LeavesAt(segment) - now;
                    break;
                }
            }

            return (false, Ms(retry), new RateInfo(_limit, 0, s.Counts.Count > 0 ? Ms(LeavesAt(s.Counts[^1].Segment) - now) : TimeSpan.Zero), null);
        }

        if (s.Counts.Count > 0 && s.Counts[^1].Segment == current)
        {
            s.Counts[^1] = (current, s.Counts[^1].Count + cost);
        }
        else
        {
            s.Counts.Add((current, cost));
        }

        return (true, TimeSpan.Zero, new RateInfo(_limit, _limit - sum - cost, Ms(LeavesAt(current) - now)), Mark(current));
    }

    protected override void Refund(State s, double now, long cost, double mark)
    {
        for (var i = 0; i < s.Counts.Count; i++)
        {
            if (s.Counts[i].Segment == (long)mark)
            {
                s.Counts[i] = (s.Counts[i].Segment, Math.Max(0, s.Counts[i].Count - cost));
                return;
            }
        }
    }

    protected override bool IsIdle(State s, double now)
    {
        Expire(s, (long)Math.Floor((now - _origin) / _segmentMs));
        return s.Counts.Count == 0;
    }

    /// <summary>When a segment's count stops counting: the end of the window that starts with it.</summary>
    private double LeavesAt(long segment) => _origin + ((segment + _segments) * _segmentMs);

    private void Expire(State s, long current)
    {
        var expired = 0;
        while (expired < s.Counts.Count && s.Counts[expired].Segment <= current - _segments)
        {
            expired++;
        }

        if (expired > 0)
        {
            s.Counts.RemoveRange(0, expired);
        }
    }

    internal sealed class State : PartitionState
    {
        /// <summary>Non-empty segments, oldest first: (segment number since the origin, count).</summary>
        public readonly List<(long Segment, long Count)> Counts = new(2);
    }
}

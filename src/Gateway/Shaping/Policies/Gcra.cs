using System.Collections.Concurrent;
using Contracts.Wire;

namespace Gateway.Shaping.Policies;

/// <summary>
/// The generic cell rate algorithm (GCRA, ITU-T I.371; the "virtual scheduling" form) with a cost per request:
/// a partition has a theoretical arrival time <c>TAT</c>; a request of cost <c>c</c> at time <c>t</c> is admitted when
/// <c>max(TAT, t) + c·T − τ ≤ t</c>, and then <c>TAT ← max(TAT, t) + c·T</c>, where <c>T</c> is the emission interval
/// (time per unit of the rate) and <c>τ = burst·T</c> the tolerance. It is a token bucket of size <c>burst</c> refilled at
/// the rate, kept as one number, which is what makes it cheap in memory and atomic in Redis (see <see cref="RedisLimiter"/>).
/// A refund moves <c>TAT</c> back (never before <c>t</c>).
/// </summary>
internal sealed class Gcra : IRateCounter
{
    private readonly ConcurrentDictionary<string, StrongBox> _tats = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private readonly double _intervalMs;
    private readonly double _toleranceMs;
    private long _lastSweep;

    /// <param name="ratePerSecond">Units (requests or tokens) added per second.</param>
    /// <param name="burst">Bucket size in units.</param>
    /// <param name="time">Clock.</param>
    public Gcra(double ratePerSecond, double burst, TimeProvider time)
    {
        _intervalMs = 1000.0 / ratePerSecond;
        _toleranceMs = burst * _intervalMs;
        _time = time;
        Burst = (long)burst;
    }

    /// <summary>Bucket size.</summary>
    public long Burst { get; }

    private double NowMs => _time.GetTimestamp() * 1000.0 / _time.TimestampFrequency;

    /// <summary>Admits and charges <paramref name="cost"/> units, or refuses with the time to wait.</summary>
    public (bool Admitted, TimeSpan RetryAfter, RateInfo Info) TryAcquire(string partition, long cost)
    {
        var now = NowMs;
        Sweep(now, force: false);
        var box = Box(partition);
        lock (box)
        {
            if (box.Evicted)
            {
                return TryAcquire(partition, cost); // forgotten by a sweep just now: count in a fresh one
            }

            var tat = Math.Max(box.Tat, now);
            var newTat = tat + (cost * _intervalMs);
            var allowAt = newTat - _toleranceMs;
            if (now < allowAt)
            {
                return (false, TimeSpan.FromMilliseconds(allowAt - now), Info(now, tat));
            }

            box.Tat = newTat;
            return (true, TimeSpan.Zero, Info(now, newTat));
        }
    }

    /// <summary>Charges (<paramref name="delta"/> &gt; 0) or refunds (&lt; 0) units without a check.</summary>
    public void Adjust(string partition, long delta)
    {
        var now = NowMs;
        var box = Box(partition);
        lock (box)
        {
            if (box.Evicted)
            {
                Adjust(partition, delta);
                return;
            }

            box.Tat = Math.Max(now, Math.Max(box.Tat, now) + (delta * _intervalMs));
        }
    }

    (bool Admitted, TimeSpan RetryAfter, RateInfo Info, string? Mark) IRateCounter.TryAcquire(string partition, long cost)
    {
        var (admitted, retryAfter, info) = TryAcquire(partition, cost);
        return (admitted, retryAfter, info, null);
    }

    void IRateCounter.Refund(string partition, long cost, string? mark) => Adjust(partition, -cost);

    private RateInfo Info(double now, double tat) =>
        new(Burst, Math.Max(0, (long)Math.Floor((now + _toleranceMs - tat) / _intervalMs)), TimeSpan.FromMilliseconds(Math.Max(0, tat - now)));

    /// <summary>Partitions held in memory now.</summary>
    public int Partitions => _tats.Count;

    /// <summary>Forgets every partition whose bucket is full again (run once a minute by <see cref="ShapingRuntime"/>, and by acquires).</summary>
    public void EvictIdle() => Sweep(NowMs, force: true);

    private StrongBox Box(string partition) => _tats.GetOrAdd(partition, static _ => new StrongBox());

    private void Sweep(double now, bool force)
    {
        // Forget partitions whose bucket is full again (their TAT is in the past), at most once a minute unless forced.
        var last = Interlocked.Read(ref _lastSweep);
        if ((!force && now - last < 60_000) || Interlocked.CompareExchange(ref _lastSweep, (long)now, last) != last)
        {
            return;
        }

        foreach (var (key, box) in _tats)
        {
            lock (box)
            {
                if (box.Tat < now)
                {
                    box.Evicted = true;
                    _tats.TryRemove(key, out _);
                }
            }
        }
    }

    private sealed class StrongBox
    {
        public double Tat;
        public bool Evicted;
    }
}

/// <summary>
/// The <c>Tokens</c> kind in this gateway: a GCRA per partition refilled at <see cref="PolicyOptions.TokenBudget"/> per
/// <see cref="PolicyOptions.EffectiveWindow"/>, bucket size one window's budget. A request whose estimate exceeds the
/// whole budget could never be admitted and is refused at once (<c>request_too_large</c>, no Retry-After); a usage above
/// the reservation is still charged (<see cref="AdjustAsync"/>), leaving the partition in debt until the rate repays it.
/// </summary>
internal sealed class LocalTokenPolicy : ShapingPolicy
{
    private readonly Gcra _gcra;

    public LocalTokenPolicy(string name, PolicyOptions options, PartitionKey partition, TimeProvider time, int share = 1)
        : base(name, options, partition)
    {
        var budget = Math.Max(1, options.TokenBudget / Math.Max(1, share));
        _gcra = new Gcra(budget / options.EffectiveWindow.TotalSeconds, budget, time);
    }

    public override bool CountsTokens => true;

    /// <summary>The budget in force (a global policy's local share while Redis is unreachable).</summary>
    public long Budget => _gcra.Burst;

    public override int? Partitions => _gcra.Partitions;

    public override void EvictIdle() => _gcra.EvictIdle();

    public override ValueTask<PolicyDecision> AcquireAsync(string partition, long cost, CancellationToken cancellationToken)
    {
        if (cost > _gcra.Burst)
        {
            return ValueTask.FromResult(PolicyDecision.Refuse(GatewayErrorCodes.RequestTooLarge, null, new RateInfo(_gcra.Burst, 0, TimeSpan.Zero)));
        }

        var (admitted, retryAfter, info) = _gcra.TryAcquire(partition, cost);
        return ValueTask.FromResult(admitted
            ? PolicyDecision.Admit(info, charge: new PolicyCharge(this, partition, cost, null))
            : PolicyDecision.Refuse(GatewayErrorCodes.TokensExhausted, retryAfter, info));
    }

    public override ValueTask AdjustAsync(string partition, long delta, CancellationToken cancellationToken)
    {
        _gcra.Adjust(partition, delta);
        return ValueTask.CompletedTask;
    }

    public override ValueTask RefundAsync(PolicyCharge charge, CancellationToken cancellationToken) => AdjustAsync(charge.Partition, -charge.Cost, cancellationToken);
}

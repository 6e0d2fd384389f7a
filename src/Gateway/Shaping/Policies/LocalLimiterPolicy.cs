using System.Threading.RateLimiting;
using Contracts.Wire;

namespace Gateway.Shaping.Policies;

/// <summary>
/// A policy enforced in this gateway. The rate kinds (token bucket, fixed window, sliding window) count in refundable
/// counters on the gateway's <see cref="TimeProvider"/> (<see cref="Gcra"/>, <see cref="FixedWindowCounter"/>,
/// <see cref="SlidingWindowCounter"/>): their Retry-After is the exact time until enough permits free, and a request
/// refused by a later step gets its permit back (<see cref="RefundAsync"/>). Concurrency and WebSocket connections use
/// System.Threading.RateLimiting's concurrency limiter, whose lease is held until the exchange ends (giving it back is
/// disposing it). The acquire tries once and waits only when the policy has a queue.
/// </summary>
internal sealed class LocalLimiterPolicy : ShapingPolicy
{
    private readonly PartitionedRateLimiter<string>? _concurrency;
    private readonly IRateCounter? _counter;
    private readonly TimeProvider _time;
    private readonly Dictionary<string, int> _waiting = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _held = new(StringComparer.Ordinal); // concurrency: leases held per partition
    private readonly long _limit;
    private int _queued;

    /// <param name="name">Policy name.</param>
    /// <param name="options">The policy.</param>
    /// <param name="partition">Partition key.</param>
    /// <param name="time">Clock of the rate counters.</param>
    /// <param name="share">Divide the limit by this (a global policy's local share while Redis is down); 1 otherwise.</param>
    public LocalLimiterPolicy(string name, PolicyOptions options, PartitionKey partition, TimeProvider time, int share = 1)
        : base(name, options, partition)
    {
        var o = options;
        _time = time;
        var queue = o.Shadow ? 0 : o.QueueLimit;
        _limit = o.Kind == PolicyKind.TokenBucket ? Share(o.TokenLimit, share) : Share(o.PermitLimit, share);
        var window = o.EffectiveWindow;
        switch (o.Kind)
        {
            case PolicyKind.TokenBucket:
                // GCRA is the token bucket kept as one number (continuous refill at TokensPerPeriod / ReplenishmentPeriod), as in Redis.
                _counter = new Gcra(Share(o.TokensPerPeriod, share) / o.ReplenishmentPeriod.TotalSeconds, _limit, time);
                break;
            case PolicyKind.FixedWindow:
                _counter = new FixedWindowCounter(_limit, window, time);
                break;
            case PolicyKind.SlidingWindow:
                _counter = new SlidingWindowCounter(_limit, window, o.SegmentsPerWindow, time);
                break;
            case PolicyKind.Concurrency or PolicyKind.WebSocket:
                var limit = (int)_limit;
                _concurrency = PartitionedRateLimiter.Create<string, string>(key => RateLimitPartition.GetConcurrencyLimiter(key, _ => new ConcurrencyLimiterOptions
                {
                    PermitLimit = limit,
                    QueueLimit = queue,
                    QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
                }));
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(options), o.Kind, "not a local limiter kind");
        }
    }

    public override ValueTask<PolicyDecision> AcquireAsync(string partition, long cost, CancellationToken cancellationToken)
    {
        if (_counter is null)
        {
            return AcquireConcurrencyAsync(partition, cancellationToken);
        }

        var decision = TryCount(partition, cost);
        return decision.Admitted || Options.QueueLimit == 0 || Options.Shadow ? ValueTask.FromResult(decision) : WaitAsync(partition, cost, decision, cancellationToken);
    }

    /// <summary>Rate kinds: partitions the counter keeps; concurrency kinds: partitions with a lease held (System.Threading.RateLimiting evicts its idle limiters by itself).</summary>
    public override int? Partitions
    {
        get
        {
            if (_counter is not null)
            {
                return _counter.Partitions;
            }

            lock (_held)
            {
                return _held.Count;
            }
        }
    }

    public override int Queued => Volatile.Read(ref _queued);

    public override void EvictIdle() => _counter?.EvictIdle();

    public override ValueTask RefundAsync(PolicyCharge charge, CancellationToken cancellationToken)
    {
        _counter?.Refund(charge.Partition, charge.Cost, charge.Mark);
        return ValueTask.CompletedTask;
    }

    private PolicyDecision TryCount(string partition, long cost)
    {
        var (admitted, retryAfter, info, mark) = _counter!.TryAcquire(partition, cost);
        return admitted
            ? PolicyDecision.Admit(info, charge: new PolicyCharge(this, partition, cost, mark))
            : PolicyDecision.Refuse(GatewayErrorCodes.RateLimited, retryAfter, info);
    }

    /// <summary>
    /// A queued rate policy: at most <see cref="PolicyOptions.QueueLimit"/> requests per partition wait, each until its
    /// Retry-After, then try again (not strictly first come, first served).
    /// </summary>
    private async ValueTask<PolicyDecision> WaitAsync(string partition, long cost, PolicyDecision refused, CancellationToken cancellationToken)
    {
        lock (_waiting)
        {
            var waiting = _waiting.GetValueOrDefault(partition);
            if (waiting >= Options.QueueLimit)
            {
                return refused;
            }

            _waiting[partition] = waiting + 1;
        }

        Interlocked.Increment(ref _queued);

        try
        {
            var decision = refused;
            while (!decision.Admitted)
            {
                await Task.Delay(decision.RetryAfter is { } ra && ra > TimeSpan.Zero ? ra : TimeSpan.FromMilliseconds(1), _time, cancellationToken);
                decision = TryCount(partition, cost);
            }

            return decision;
        }
        finally
        {
            Interlocked.Decrement(ref _queued);
            lock (_waiting)
            {
                if (--_waiting[partition] == 0)
                {
                    _waiting.Remove(partition);
                }
            }
        }
    }

    private async ValueTask<PolicyDecision> AcquireConcurrencyAsync(string partition, CancellationToken cancellationToken)
    {
        var lease = _concurrency!.AttemptAcquire(partition);
        if (!lease.IsAcquired && Options.QueueLimit > 0 && !Options.Shadow)
        {
            lease.Dispose();
            Interlocked.Increment(ref _queued);
            try
            {
                lease = await _concurrency.AcquireAsync(partition, 1, cancellationToken);
            }
            finally
            {
                Interlocked.Decrement(ref _queued);
            }
        }

        if (lease.IsAcquired)
        {
            // No x-ratelimit-* figures: those describe a rate over time (limit, remaining, reset), which a limit on
            // requests at once is not. The lease is held until the exchange ends; disposing it gives the permit back.
            lock (_held)
            {
                _held[partition] = _held.GetValueOrDefault(partition) + 1;
            }

            return PolicyDecision.Admit(null, new HeldLease(this, partition, lease));
        }

        lease.Dispose();
        return PolicyDecision.Refuse(Options.Kind == PolicyKind.Concurrency ? GatewayErrorCodes.Concurrency : GatewayErrorCodes.RateLimited, TimeSpan.FromSeconds(1), null);
    }

    protected override async ValueTask ReleaseLimitersAsync()
    {
        if (_concurrency is not null)
        {
            await _concurrency.DisposeAsync();
        }
    }

    private void Released(string partition)
    {
        lock (_held)
        {
            if (--_held[partition] == 0)
            {
                _held.Remove(partition);
            }
        }
    }

    /// <summary>A concurrency permit, counted per partition until disposed (once).</summary>
    private sealed class HeldLease(LocalLimiterPolicy policy, string partition, RateLimitLease lease) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                lease.Dispose();
                policy.Released(partition);
            }
        }
    }

    private static int Share(int value, int share) => Math.Max(1, value / Math.Max(1, share));
}

using System.Threading.RateLimiting;
using Contracts.Wire;

namespace Gateway.Shaping.Policies;

/// <summary>
/// A policy enforced in this gateway with System.Threading.RateLimiting: token bucket, fixed window, sliding window or
/// concurrency, one limiter per partition (<see cref="PartitionedRateLimiter.Create{TResource, TPartitionKey}"/>; idle
/// partitions are evicted by the library). The acquire tries the synchronous fast path first and waits only when the
/// policy has a queue.
/// </summary>
internal sealed class LocalLimiterPolicy : ShapingPolicy
{
    private readonly PartitionedRateLimiter<string> _limiter;
    private readonly long _limit;
    private readonly TimeSpan _period;

    /// <param name="name">Policy name.</param>
    /// <param name="options">The policy.</param>
    /// <param name="partition">Partition key.</param>
    /// <param name="share">Divide the limit by this (a global policy's local share while Redis is down); 1 otherwise.</param>
    public LocalLimiterPolicy(string name, PolicyOptions options, PartitionKey partition, int share = 1)
        : base(name, options, partition)
    {
        var o = options;
        var queue = o.Shadow ? 0 : o.QueueLimit;
        (_limit, _period) = o.Kind switch
        {
            PolicyKind.TokenBucket => (Share(o.TokenLimit, share), o.ReplenishmentPeriod),
            PolicyKind.Concurrency => (Share(o.PermitLimit, share), TimeSpan.Zero),
            _ => (Share(o.PermitLimit, share), o.Window),
        };
        var limit = (int)_limit;
        _limiter = o.Kind switch
        {
            PolicyKind.TokenBucket => PartitionedRateLimiter.Create<string, string>(key => RateLimitPartition.GetTokenBucketLimiter(key, _ => new TokenBucketRateLimiterOptions
            {
                TokenLimit = limit,
                TokensPerPeriod = Share(o.TokensPerPeriod, share),
                ReplenishmentPeriod = o.ReplenishmentPeriod,
                QueueLimit = queue,
                QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
                AutoReplenishment = true,
            })),
            PolicyKind.FixedWindow => PartitionedRateLimiter.Create<string, string>(key => RateLimitPartition.GetFixedWindowLimiter(key, _ => new FixedWindowRateLimiterOptions
            {
                PermitLimit = limit,
                Window = o.Window,
                QueueLimit = queue,
                QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
                AutoReplenishment = true,
            })),
            PolicyKind.SlidingWindow => PartitionedRateLimiter.Create<string, string>(key => RateLimitPartition.GetSlidingWindowLimiter(key, _ => new SlidingWindowRateLimiterOptions
            {
                PermitLimit = limit,
                Window = o.Window,
                SegmentsPerWindow = o.SegmentsPerWindow,
                QueueLimit = queue,
                QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
                AutoReplenishment = true,
            })),
            PolicyKind.Concurrency or PolicyKind.WebSocket => PartitionedRateLimiter.Create<string, string>(key => RateLimitPartition.GetConcurrencyLimiter(key, _ => new ConcurrencyLimiterOptions
            {
                PermitLimit = limit,
                QueueLimit = queue,
                QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
            })),
            _ => throw new ArgumentOutOfRangeException(nameof(options), o.Kind, "not a local limiter kind"),
        };
    }

    public override async ValueTask<PolicyDecision> AcquireAsync(string partition, long cost, CancellationToken cancellationToken)
    {
        var lease = _limiter.AttemptAcquire(partition);
        if (!lease.IsAcquired && Options.QueueLimit > 0 && !Options.Shadow)
        {
            lease.Dispose();
            lease = await _limiter.AcquireAsync(partition, 1, cancellationToken);
        }

        var info = Info(partition);
        if (lease.IsAcquired)
        {
            // Rate limits need nothing released; a concurrency lease is held until the exchange ends.
            if (Options.Kind is PolicyKind.Concurrency or PolicyKind.WebSocket)
            {
                return PolicyDecision.Admit(info, lease);
            }

            lease.Dispose();
            return PolicyDecision.Admit(info);
        }

        var retryAfter = lease.TryGetMetadata(MetadataName.RetryAfter, out var ra) ? ra : _period > TimeSpan.Zero ? _period : TimeSpan.FromSeconds(1);
        lease.Dispose();
        return PolicyDecision.Refuse(Options.Kind == PolicyKind.Concurrency ? GatewayErrorCodes.Concurrency : GatewayErrorCodes.RateLimited, retryAfter, info);
    }

    private RateInfo Info(string partition)
    {
        var available = _limiter.GetStatistics(partition)?.CurrentAvailablePermits ?? _limit;
        return new RateInfo(_limit, Math.Max(0, available), _period);
    }

    protected override async ValueTask ReleaseLimitersAsync() => await _limiter.DisposeAsync();

    private static int Share(int value, int share) => Math.Max(1, value / Math.Max(1, share));
}

using Contracts.Wire;

namespace Gateway.Shaping.Policies;

/// <summary>
/// A fleet-wide policy (<c>Scope: Global</c>): every decision is made in Redis (<see cref="RedisLimiter"/>), so N gateways
/// together admit the configured rate, not N times it. While Redis is unreachable it follows its <see cref="FailMode"/>:
/// its local share (limit / <c>Gateway:Shaping:Instances</c>, the default), open, or closed. A decision waits at most
/// <c>RedisTimeout</c> for Redis (<see cref="ShapingRedis"/>); past it, that request gets the FailMode and Redis is not
/// asked again until a probe finds it answering.
/// </summary>
internal sealed class GlobalPolicy : ShapingPolicy
{
    private readonly ShapingRedis _redis;
    private readonly ShapingPolicy _localShare;

    public GlobalPolicy(string name, PolicyOptions options, PartitionKey partition, ShapingRedis redis, ShapingPolicy localShare)
        : base(name, options, partition)
    {
        _redis = redis;
        _localShare = localShare;
    }

    public override bool CountsTokens => Options.Kind == PolicyKind.Tokens;

    public override async ValueTask<PolicyDecision> AcquireAsync(string partition, long cost, CancellationToken cancellationToken)
    {
        if (CountsTokens && cost > Limit)
        {
            // More than the whole budget: no wait would admit it (decided before Redis, the same way as locally).
            return PolicyDecision.Refuse(GatewayErrorCodes.RequestTooLarge, null, new RateInfo(Limit, 0, TimeSpan.Zero));
        }

        var (ok, result) = await _redis.RunAsync((Policy: this, Partition: partition, Cost: cost),
            static (db, s) => RedisLimiter.EvaluateAsync(db, s.Policy.Name, s.Partition, s.Policy.Options, s.Cost, check: true), cancellationToken);
        if (ok)
        {
            var (admitted, retryAfter, remaining, reset, mark) = result;
            var info = new RateInfo(Limit, admitted ? remaining : 0, reset);
            return admitted
                ? PolicyDecision.Admit(info, charge: new PolicyCharge(this, partition, cost, mark))
                : PolicyDecision.Refuse(CountsTokens ? GatewayErrorCodes.TokensExhausted : GatewayErrorCodes.RateLimited, retryAfter, info);
        }

        return Options.FailMode switch
        {
            FailMode.Open => PolicyDecision.Admit(null),
            FailMode.Closed => PolicyDecision.Refuse(GatewayErrorCodes.RedisUnavailable, TimeSpan.FromSeconds(1), null), // the message says Redis is unavailable (ShapingAnswers)
            _ => await _localShare.AcquireAsync(partition, cost, cancellationToken),
        };
    }

    public override async ValueTask AdjustAsync(string partition, long delta, CancellationToken cancellationToken)
    {
        if (!CountsTokens)
        {
            return;
        }

        var (ok, _) = await _redis.RunAsync((Policy: this, Partition: partition, Delta: delta),
            static (db, s) => RedisLimiter.EvaluateAsync(db, s.Policy.Name, s.Partition, s.Policy.Options, s.Delta, check: false), cancellationToken);
        if (ok)
        {
            return;
        }

        await _localShare.AdjustAsync(partition, delta, cancellationToken);
    }

    public override async ValueTask RefundAsync(PolicyCharge charge, CancellationToken cancellationToken)
    {
        // A refund that cannot reach Redis in time is lost: it errs on the side of the limit.
        if (Options.Kind is PolicyKind.FixedWindow or PolicyKind.SlidingWindow)
        {
            if (charge.Mark is not null)
            {
                await _redis.RunAsync((Policy: this, Charge: charge),
                    static async (db, s) => { await RedisLimiter.RefundWindowAsync(db, s.Policy.Name, s.Charge.Partition, s.Policy.Options, s.Charge.Cost, s.Charge.Mark!); return true; }, cancellationToken);
            }
        }
        else
        {
            await _redis.RunAsync((Policy: this, Charge: charge),
                static (db, s) => RedisLimiter.EvaluateAsync(db, s.Policy.Name, s.Charge.Partition, s.Policy.Options, -s.Charge.Cost, check: false), cancellationToken);
        }
    }

    private long Limit => Options.Kind switch
    {
        PolicyKind.TokenBucket => Options.TokenLimit,
        PolicyKind.Tokens => Options.TokenBudget,
        _ => Options.PermitLimit,
    };

    /// <summary>Partitions of the local share (kept while Redis is unavailable); the fleet-wide ones live in Redis, with a TTL.</summary>
    public override int? Partitions => _localShare.Partitions;

    public override int Queued => _localShare.Queued;

    public override void EvictIdle() => _localShare.EvictIdle();

    protected override ValueTask ReleaseLimitersAsync() => _localShare.DisposeAsync();
}

namespace Gateway.Shaping.Policies;

/// <summary>
/// What a policy decided for one request: admitted (with a lease to release when the exchange ends) or refused (with
/// when to retry), plus the figures of the rate-limit headers.
/// </summary>
internal readonly struct PolicyDecision
{
    public static readonly PolicyDecision Unlimited = new(true, null, null, null, null);

    public PolicyDecision(bool admitted, IDisposable? lease, TimeSpan? retryAfter, RateInfo? info, string? reason, PolicyCharge? charge = null)
    {
        Admitted = admitted;
        Lease = lease;
        RetryAfter = retryAfter;
        Info = info;
        Reason = reason;
        Charge = charge;
    }

    /// <summary>What an admitted request took from the policy, to give back if the request is refused later (null: nothing to give back).</summary>
    public PolicyCharge? Charge { get; }

    public bool Admitted { get; }

    /// <summary>Held for the exchange's lifetime (concurrency limits); null for rate limits.</summary>
    public IDisposable? Lease { get; }

    public TimeSpan? RetryAfter { get; }

    public RateInfo? Info { get; }

    /// <summary>Why it was refused (<c>rate_limited</c>, <c>tokens_exhausted</c>, <c>concurrency</c>, <c>redis_unavailable</c>), or null.</summary>
    public string? Reason { get; }

    public static PolicyDecision Admit(RateInfo? info, IDisposable? lease = null, PolicyCharge? charge = null) => new(true, lease, null, info, null, charge);

    public static PolicyDecision Refuse(string reason, TimeSpan? retryAfter, RateInfo? info) => new(false, null, retryAfter, info, reason);
}

/// <summary>Figures for <c>x-ratelimit-limit-*</c>, <c>x-ratelimit-remaining-*</c>, <c>x-ratelimit-reset-*</c>.</summary>
/// <param name="Limit">Requests (or tokens) per window or bucket.</param>
/// <param name="Remaining">Left now, never negative.</param>
/// <param name="Reset">Time until the limit is full again (or, for windows, until the window ends).</param>
internal readonly record struct RateInfo(long Limit, long Remaining, TimeSpan Reset);

/// <summary>
/// What one admitted request took from one limiter: <paramref name="Cost"/> units in <paramref name="Partition"/>, in the
/// window or segment <paramref name="Mark"/> (a fixed window's start, a sliding window's segment; unused by GCRA), so that
/// <see cref="ShapingPolicy.RefundAsync"/> gives back exactly that and never a later window's count.
/// </summary>
/// <param name="Owner">The limiter that charged it (a global policy's local share while Redis is unreachable).</param>
/// <param name="Partition">The partition charged.</param>
/// <param name="Cost">Units charged (1 request, or tokens).</param>
/// <param name="Mark">The window or segment charged; null for GCRA.</param>
internal readonly record struct PolicyCharge(ShapingPolicy Owner, string Partition, long Cost, string? Mark);

/// <summary>A named, compiled policy.</summary>
internal abstract class ShapingPolicy : IAsyncDisposable
{
    protected ShapingPolicy(string name, PolicyOptions options, PartitionKey partition)
    {
        Name = name;
        Options = options;
        Partition = partition;
    }

    public string Name { get; }

    public PolicyOptions Options { get; }

    public PartitionKey Partition { get; }

    /// <summary>True when the policy counts tokens (rate-limit headers say <c>-tokens</c>).</summary>
    public virtual bool CountsTokens => false;

    /// <summary>Decides for one request in <paramref name="partition"/> costing <paramref name="cost"/> (1 request, or tokens).</summary>
    public abstract ValueTask<PolicyDecision> AcquireAsync(string partition, long cost, CancellationToken cancellationToken);

    /// <summary>Corrects an earlier charge by <paramref name="delta"/> (negative: refund). Only token policies do anything.</summary>
    public virtual ValueTask AdjustAsync(string partition, long delta, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>
    /// Gives back a charge this policy made (<see cref="PolicyCharge.Owner"/> is this): the request was refused by a later
    /// step. A window that has ended since is not touched; a GCRA's TAT moves back, never before now.
    /// </summary>
    public virtual ValueTask RefundAsync(PolicyCharge charge, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>Partitions this policy holds in this gateway's memory (null: none kept here).</summary>
    public virtual int? Partitions => null;

    /// <summary>Requests waiting in the policy's queue now (<see cref="PolicyOptions.QueueLimit"/>).</summary>
    public virtual int Queued => 0;

    /// <summary>Forgets idle partitions (called once a minute).</summary>
    public virtual void EvictIdle()
    {
    }

    public ValueTask DisposeAsync() => ReleaseLimitersAsync();

    /// <summary>Releases the policy's limiters.</summary>
    protected virtual ValueTask ReleaseLimitersAsync() => ValueTask.CompletedTask;
}

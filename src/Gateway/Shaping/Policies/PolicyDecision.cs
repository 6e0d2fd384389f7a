namespace Gateway.Shaping.Policies;

/// <summary>
/// What a policy decided for one request: admitted (with a lease to release when the exchange ends) or refused (with
/// when to retry), plus the figures of the rate-limit headers.
/// </summary>
internal readonly struct PolicyDecision
{
    public static readonly PolicyDecision Unlimited = new(true, null, null, null, null);

    public PolicyDecision(bool admitted, IDisposable? lease, TimeSpan? retryAfter, RateInfo? info, string? reason)
    {
        Admitted = admitted;
        Lease = lease;
        RetryAfter = retryAfter;
        Info = info;
        Reason = reason;
    }

    public bool Admitted { get; }

    /// <summary>Held for the exchange's lifetime (concurrency limits); null for rate limits.</summary>
    public IDisposable? Lease { get; }

    public TimeSpan? RetryAfter { get; }

    public RateInfo? Info { get; }

    /// <summary>Why it was refused (<c>rate_limited</c>, <c>tokens_exhausted</c>, <c>concurrency</c>, <c>redis_unavailable</c>), or null.</summary>
    public string? Reason { get; }

    public static PolicyDecision Admit(RateInfo? info, IDisposable? lease = null) => new(true, lease, null, info, null);

    public static PolicyDecision Refuse(string reason, TimeSpan? retryAfter, RateInfo? info) => new(false, null, retryAfter, info, reason);
}

/// <summary>Figures for <c>x-ratelimit-limit-*</c>, <c>x-ratelimit-remaining-*</c>, <c>x-ratelimit-reset-*</c>.</summary>
/// <param name="Limit">Requests (or tokens) per window or bucket.</param>
/// <param name="Remaining">Left now, never negative.</param>
/// <param name="Reset">Time until the limit is full again (or, for windows, until the window ends).</param>
internal readonly record struct RateInfo(long Limit, long Remaining, TimeSpan Reset);

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

    public ValueTask DisposeAsync() => ReleaseLimitersAsync();

    /// <summary>Releases the policy's limiters.</summary>
    protected virtual ValueTask ReleaseLimitersAsync() => ValueTask.CompletedTask;
}

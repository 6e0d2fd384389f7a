using System.ComponentModel.DataAnnotations;
using Gateway.Configuration;

namespace Gateway.Shaping;

/// <summary>
/// Traffic shaping, bound from <c>Gateway:Shaping</c> and re-read on every configuration reload (a reload that does not
/// validate keeps the last good limits). See docs/configuration.md.
/// </summary>
internal sealed record ShapingOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Gateway:Shaping";

    /// <summary>StackExchange.Redis connection string (or <c>redis://</c> URL) for policies with <c>Scope: Global</c>.</summary>
    public string? Redis { get; set; }

    /// <summary>The longest a fleet-wide decision waits for Redis; past it the policy's FailMode applies to that request. Default 00:00:00.250 (1 ms to 10 s).</summary>
    [Range(typeof(TimeSpan), ConfigRanges.MinDuration, "00:00:10")]
    public TimeSpan RedisTimeout { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>After Redis failed or timed out, how often a PING checks whether it answers again (Redis is not asked for decisions meanwhile). Default 00:00:00.500 (1 ms to 1 min).</summary>
    [Range(typeof(TimeSpan), ConfigRanges.MinDuration, "00:01:00")]
    public TimeSpan RedisProbeInterval { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>How many gateway instances share global limits: a global policy falls back to limit / <c>Instances</c> locally while Redis is unreachable. Default 1.</summary>
    [Range(1, int.MaxValue)]
    public int Instances { get; set; } = 1;

    /// <summary>Named rate-limit policies; routes name them in <c>Metadata:Policies</c>.</summary>
    public ConfigMap<PolicyOptions> Policies { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Admission control per cluster id: in-flight cap, priority queue, adaptive limit, circuit breaker.</summary>
    public ConfigMap<AdmissionOptions> Admission { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Priority of clients by key (as the gateway names them: <c>key:</c> + 16 hex digits of the API key's SHA-256, or <c>ip:ADDRESS</c>) → priority class.</summary>
    public ConfigMap<string> KeyPriorities { get; set; } = new(StringComparer.Ordinal);

    /// <summary>At most one log line per policy and reason in this interval (refusals are always counted in metrics). Default 00:00:05.</summary>
    [Range(typeof(TimeSpan), "00:00:00", ConfigRanges.MaxDuration)]
    public TimeSpan RefusalLogInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Output tokens charged up front for a request that does not say (<c>max_tokens</c> absent). Default 256.</summary>
    [Range(1, int.MaxValue)]
    public int DefaultMaxTokens { get; set; } = 256;

    /// <summary>Largest JSON request body read to count tokens, in bytes. Default 1 MiB.</summary>
    [Range(0, int.MaxValue)]
    public int MaxInspectBytes { get; set; } = 1024 * 1024;
}

/// <summary>What a policy limits.</summary>
internal enum PolicyKind
{
    /// <summary>Token bucket: <c>TokenLimit</c> burst, <c>TokensPerPeriod</c> added every <c>ReplenishmentPeriod</c>.</summary>
    TokenBucket,

    /// <summary><c>PermitLimit</c> requests per <c>Window</c>, the window starting afresh each time.</summary>
    FixedWindow,

    /// <summary><c>PermitLimit</c> requests in any <c>Window</c>, tracked in <c>SegmentsPerWindow</c> segments.</summary>
    SlidingWindow,

    /// <summary>At most <c>PermitLimit</c> requests in progress at once.</summary>
    Concurrency,

    /// <summary>LLM tokens (prompt + output): <c>Tokens</c> per <c>Window</c> (a minute by default), reserved up front, reconciled with reported usage.</summary>
    Tokens,

    /// <summary>WebSocket connections: at most <c>PermitLimit</c> open at once, and at most <c>MessagesPerConnection</c> client messages on each.</summary>
    WebSocket,
}

/// <summary>Where a policy's counters live.</summary>
internal enum PolicyScope
{
    /// <summary>In this gateway.</summary>
    Local,

    /// <summary>In Redis, shared by every gateway of the fleet (atomic Lua).</summary>
    Global,
}

/// <summary>What a global policy does while Redis is unreachable.</summary>
internal enum FailMode
{
    /// <summary>Enforce the limit locally at limit / <c>Gateway:Shaping:Instances</c> (the default).</summary>
    LocalShare,

    /// <summary>Admit everything.</summary>
    Open,

    /// <summary>Refuse everything (503).</summary>
    Closed,
}

/// <summary>One rate-limit policy, bound from <c>Gateway:Shaping:Policies:{name}</c>.</summary>
internal sealed record PolicyOptions
{
    public PolicyKind Kind { get; set; } = PolicyKind.TokenBucket;

    /// <summary>
    /// What the limit is counted per: <c>ApiKey</c>, <c>ClientAddress</c>, <c>Session</c>, <c>Route</c>, <c>Header:NAME</c>,
    /// <c>Global</c> (one counter for all), or a combination joined by <c>+</c> (<c>ApiKey+Route</c>). Default <c>ApiKey</c>
    /// (requests without an API key are counted per client address).
    /// </summary>
    public string Partition { get; set; } = "ApiKey";

    public PolicyScope Scope { get; set; } = PolicyScope.Local;

    /// <summary>Count and log what would be refused, refuse nothing.</summary>
    public bool Shadow { get; set; }

    public FailMode FailMode { get; set; } = FailMode.LocalShare;

    /// <summary>Requests per window (FixedWindow, SlidingWindow), in progress (Concurrency), or connections (WebSocket).</summary>
    public int PermitLimit { get; set; }

    /// <summary>
    /// FixedWindow, SlidingWindow: the window (default 00:00:01). Tokens: the period of the <see cref="Tokens"/> budget
    /// (default 00:01:00; an hour or a day work). Read through <see cref="EffectiveWindow"/>.
    /// </summary>
    [Range(typeof(TimeSpan), ConfigRanges.MinDuration, ConfigRanges.MaxDuration)]
    public TimeSpan? Window { get; set; }

    [Range(1, ConfigRanges.MaxSegmentsPerWindow)]
    public int SegmentsPerWindow { get; set; } = 10;

    /// <summary>Bucket size (burst) of a TokenBucket.</summary>
    public int TokenLimit { get; set; }

    public int TokensPerPeriod { get; set; }

    [Range(typeof(TimeSpan), ConfigRanges.MinDuration, ConfigRanges.MaxDuration)]
    public TimeSpan ReplenishmentPeriod { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Requests that may wait for a permit (local, non-shadow policies); 0 refuses at once. Default 0.</summary>
    [Range(0, int.MaxValue)]
    public int QueueLimit { get; set; }

    /// <summary>Tokens kind: LLM tokens (prompt + output) per <see cref="Window"/>, and the most one request may reserve.</summary>
    public long Tokens { get; set; }

    /// <summary>Tokens kind: the older spelling of <see cref="Tokens"/> with a one-minute <see cref="Window"/> (not both).</summary>
    public long TokensPerMinute { get; set; }

    /// <summary>
    /// Concurrency kind with <c>Scope: Global</c>: how long a lease outlives its last renewal in Redis. The holder renews
    /// every LeaseTtl / 3 while the exchange lives, so this is the longest a crashed gateway's leases block others.
    /// Default 00:00:30 (1 s to 1 h).
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "01:00:00")]
    public TimeSpan LeaseTtl { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>WebSocket kind: client messages allowed per connection (0 = no limit).</summary>
    public int MessagesPerConnection { get; set; }

    /// <summary>The window in force: <see cref="Window"/>, or the kind's default (a minute for Tokens, a second otherwise).</summary>
    public TimeSpan EffectiveWindow => Window ?? (Kind == PolicyKind.Tokens ? TimeSpan.FromMinutes(1) : TimeSpan.FromSeconds(1));

    /// <summary>Tokens kind: the budget per <see cref="EffectiveWindow"/> (<see cref="Tokens"/>, or <see cref="TokensPerMinute"/>).</summary>
    public long TokenBudget => Tokens > 0 ? Tokens : TokensPerMinute;
}

/// <summary>Admission control of one cluster, bound from <c>Gateway:Shaping:Admission:{clusterId}</c>.</summary>
internal sealed record AdmissionOptions
{
    /// <summary>Requests in flight to the cluster at once (the fixed limit, or the adaptive limit's start). Must be &gt; 0.</summary>
    [Range(1, int.MaxValue)]
    public int MaxInFlight { get; set; } = 32;

    /// <summary>Requests that may wait for a slot; beyond it the lowest-priority waiter (or the newcomer) is refused with 503. Default 64.</summary>
    [Range(0, int.MaxValue)]
    public int QueueLimit { get; set; } = 64;

    /// <summary>How long a request may wait; then it is refused with 503. Default 00:00:02.</summary>
    [Range(typeof(TimeSpan), "00:00:00", ConfigRanges.MaxDuration)]
    public TimeSpan QueueTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Request header giving the priority class (a name from <see cref="PriorityClasses"/>). Default <c>x-priority</c>.</summary>
    public string PriorityHeader { get; set; } = "x-priority";

    /// <summary>Priority classes from most to least urgent. Default <c>high</c>, <c>normal</c>, <c>low</c>.</summary>
    public ConfigList<string> PriorityClasses { get; set; } = [];

    /// <summary>The default classes.</summary>
    public static readonly string[] DefaultPriorityClasses = ["high", "normal", "low"];

    /// <summary>Class of requests that name none. Default <c>normal</c>.</summary>
    public string DefaultPriority { get; set; } = "normal";

    /// <summary>
    /// Requests in flight to the cluster at once across every gateway sharing <c>Gateway:Shaping:Redis</c>, held as
    /// fleet-wide leases (as a <c>Concurrency</c> policy with <c>Scope: Global</c>: a sorted set with a TTL, renewed while
    /// the exchange lives); a request admitted here but over the fleet's cap is refused with 503 <c>fleet_capacity</c>.
    /// 0 (the default): the cap counts this gateway only.
    /// </summary>
    [Range(0, int.MaxValue)]
    public int FleetMaxInFlight { get; set; }

    /// <summary>How long a fleet-wide lease lives unless renewed (a gateway killed holding leases blocks no longer). Default 00:00:30.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "01:00:00")]
    public TimeSpan FleetLeaseTtl { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Aging of the priority classes: a waiter of a less urgent class that has waited this long is served before the more
    /// urgent classes at the next free slot (the oldest such waiter first), so a low class is never starved for longer
    /// than this bound plus the time to the next departure. Unset (the default): half of <see cref="QueueTimeout"/>;
    /// <c>00:00:00</c>: strict priority, no aging. Must be below <see cref="QueueTimeout"/> (a waiter leaves at the
    /// queue timeout first).
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", ConfigRanges.MaxDuration)]
    public TimeSpan? MaxStarvation { get; set; }

    /// <summary>
    /// Fair share within a class: the weight of one prompt (input) token in a key's virtual token counter
    /// (Sheng et al., OSDI 2024: w_p). Default 1.
    /// </summary>
    [Range(0.0, 1_000_000.0)]
    public double InputTokenWeight { get; set; } = 1.0;

    /// <summary>
    /// Fair share within a class: the weight of one generated (output) token in a key's virtual token counter
    /// (Sheng et al., OSDI 2024: w_q; the paper uses 2, after the price ratio of output to input tokens). Default 2.
    /// </summary>
    [Range(0.0, 1_000_000.0)]
    public double OutputTokenWeight { get; set; } = 2.0;

    /// <summary>
    /// Slots of the in-flight limit held back from keys over their fair share, so that a key under its share (a light
    /// tenant) finds a slot free when its request arrives at saturation instead of waiting for one to free and then for
    /// its turn. Under its share: served fewer weighted tokens (as the virtual token counter counts them) while others
    /// waited than its weight's part of all, over <see cref="FairShareWindow"/>; or holding fewer requests in flight than
    /// limit x its weight / the summed weights of the keys active within <see cref="FairShareWindow"/>. A key alone is
    /// never over its share, so nothing is held back from a single tenant. 0 (the default): work-conserving, every free
    /// slot goes to the next waiter. Above 0 it is not work-conserving: while a key under its share is active but leaves
    /// the headroom unused, up to this many slots stay idle (the price of its latency). Must be below
    /// <see cref="MaxInFlight"/>; under an adaptive limit at most the limit - 1 is held back.
    /// </summary>
    [Range(0, int.MaxValue)]
    public int FairShareHeadroom { get; set; }

    /// <summary>
    /// For <see cref="FairShareHeadroom"/>: the time constant of each key's measure of recent service (an exponentially
    /// decaying sum of weighted tokens), and how long a key counts as active after its latest request arrived (it counts
    /// while it has requests in flight or waiting, too). Default 00:00:03.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00.010", ConfigRanges.MaxDuration)]
    public TimeSpan FairShareWindow { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>The aging bound in force: <see cref="MaxStarvation"/>, else half of <see cref="QueueTimeout"/>; null: no aging.</summary>
    public TimeSpan? EffectiveMaxStarvation => MaxStarvation is { } m ? (m > TimeSpan.Zero ? m : null) : (QueueTimeout > TimeSpan.Zero ? QueueTimeout / 2 : null);

    /// <summary>Adaptive in-flight limit.</summary>
    public AdaptiveOptions Adaptive { get; set; } = new();

    /// <summary>Circuit breaker on the cluster.</summary>
    public CircuitBreakerOptions CircuitBreaker { get; set; } = new();
}

/// <summary>
/// The adaptive concurrency limit (a gradient controller after Envoy's adaptive concurrency filter), bound from
/// <c>Gateway:Shaping:Admission:{clusterId}:Adaptive</c>.
/// </summary>
internal sealed record AdaptiveOptions
{
    public bool Enabled { get; set; }

    /// <summary>The smallest limit, and the limit while the no-load latency is measured. Default 2.</summary>
    [Range(1, int.MaxValue)]
    public int MinLimit { get; set; } = 2;

    /// <summary>The largest limit: the model server's batch slots is a good value. Default 1000.</summary>
    [Range(1, int.MaxValue)]
    public int MaxLimit { get; set; } = 1000;

    /// <summary>Latency accepted above the no-load latency (a factor), e.g. the slow-down of a full batch. Default 1.5.</summary>
    [Range(1.0, double.MaxValue)]
    public double Tolerance { get; set; } = 1.5;

    /// <summary>Weight of a new limit estimate (0 to 1]. Default 0.2.</summary>
    [Range(0.0, 1.0, MinimumIsExclusive = true)]
    public double Smoothing { get; set; } = 0.2;

    /// <summary>How often the limit is recomputed, from the p90 latency of that window. Default 00:00:00.250.</summary>
    [Range(typeof(TimeSpan), ConfigRanges.MinDuration, ConfigRanges.MaxDuration)]
    public TimeSpan SampleWindow { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>How often the no-load latency is measured again (the limit is pinned at MinLimit meanwhile). Default 00:01:00.</summary>
    [Range(typeof(TimeSpan), ConfigRanges.MinDuration, ConfigRanges.MaxDuration)]
    public TimeSpan MinRttInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Requests measured for the no-load latency (its p10 is taken). Default 20.</summary>
    [Range(1, 100_000)]
    public int MinRttSamples { get; set; } = 20;
}

/// <summary>Circuit breaker (Polly.Core), bound from <c>Gateway:Shaping:Admission:{clusterId}:CircuitBreaker</c>.</summary>
internal sealed record CircuitBreakerOptions
{
    public bool Enabled { get; set; }

    /// <summary>Fraction of failed requests (5xx from the backend, transport errors) that opens the circuit. Default 0.5.</summary>
    [Range(0.0, 1.0, MinimumIsExclusive = true)]
    public double FailureRatio { get; set; } = 0.5;

    /// <summary>Requests in the sampling window before the ratio counts. Default 20.</summary>
    [Range(2, int.MaxValue)]
    public int MinimumThroughput { get; set; } = 20;

    [Range(typeof(TimeSpan), ConfigRanges.PollyMinDuration, ConfigRanges.PollyMaxDuration)]
    public TimeSpan SamplingDuration { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long the circuit stays open (fast 503s) before a trial request. Default 00:00:05.</summary>
    [Range(typeof(TimeSpan), ConfigRanges.PollyMinDuration, ConfigRanges.PollyMaxDuration)]
    public TimeSpan BreakDuration { get; set; } = TimeSpan.FromSeconds(5);
}

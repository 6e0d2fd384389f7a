using Contracts.Recording;
using Gateway.Configuration;
using Microsoft.Extensions.Options;

namespace Gateway.Shaping;

/// <summary>
/// Validates <see cref="ShapingOptions"/>, reporting every problem with its full key: the records' ranges (which
/// include every range Polly's circuit breaker and System.Threading.RateLimiting's limiters enforce, so their
/// exceptions are never reached), then the rules a range cannot say (a kind's required values, names). Run by
/// <see cref="ConfigurationValidator"/> at start-up and on every reload candidate, and registered for
/// <c>IOptionsMonitor&lt;ShapingOptions&gt;</c>.
/// </summary>
internal sealed class ShapingOptionsValidator : IValidateOptions<ShapingOptions>
{
    private const string S = ShapingOptions.Section;
    private static readonly ShapingOptionsRanges s_ranges = new();
    private static readonly PolicyOptionsRanges s_policyRanges = new();
    private static readonly AdmissionOptionsRanges s_admissionRanges = new();
    private static readonly AdaptiveOptionsRanges s_adaptiveRanges = new();
    private static readonly CircuitBreakerOptionsRanges s_breakerRanges = new();

    /// <summary>Largest <see cref="PolicyOptions.TokensPerMinute"/>: 10^12, far from the overflow of a token bucket's arithmetic.</summary>
    public const long MaxTokensPerMinute = 1_000_000_000_000;

    public ValidateOptionsResult Validate(string? name, ShapingOptions options)
    {
        var errors = new List<string>();
        Validate(options, errors);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    /// <summary>Adds one message per problem.</summary>
    /// <param name="o">The options.</param>
    /// <param name="errors">Where messages are added.</param>
    /// <param name="raw">The configuration the options were bound from, to quote values as written; may be null.</param>
    public static void Validate(ShapingOptions o, List<string> errors, IConfiguration? raw = null)
    {
        OptionsRanges.Check(s_ranges, S, o, raw, errors);
        if (o.Redis is not null)
        {
            try
            {
                RedisConnection.Parse(o.Redis);
            }
            catch (ArgumentException ex)
            {
                errors.Add($"{S}:Redis is not a valid Redis connection: {ex.Message}");
            }
        }

        foreach (var (name, p) in o.Policies)
        {
            ValidatePolicy($"{S}:Policies:{name}", p, o, raw, errors);
        }

        foreach (var (cluster, a) in o.Admission)
        {
            var k = $"{S}:Admission:{cluster}";
            OptionsRanges.Check(s_admissionRanges, k, a, raw, errors);
            OptionsRanges.Check(s_adaptiveRanges, $"{k}:Adaptive", a.Adaptive, raw, errors);
            OptionsRanges.Check(s_breakerRanges, $"{k}:CircuitBreaker", a.CircuitBreaker, raw, errors);

            if (a.FleetMaxInFlight > 0 && string.IsNullOrWhiteSpace(o.Redis))
            {
                errors.Add($"{k}:FleetMaxInFlight needs {S}:Redis: the fleet-wide cap is held as leases in the Redis the gateways share (was {a.FleetMaxInFlight}).");
            }

            var classes = a.PriorityClasses.Count > 0 ? a.PriorityClasses : [.. AdmissionOptions.DefaultPriorityClasses];
            if (classes.Distinct(StringComparer.OrdinalIgnoreCase).Count() != classes.Count)
            {
                errors.Add($"{k}:PriorityClasses has duplicates ({string.Join(", ", classes)}).");
            }

            if (!classes.Contains(a.DefaultPriority, StringComparer.OrdinalIgnoreCase))
            {
                errors.Add($"{k}:DefaultPriority '{a.DefaultPriority}' is not one of PriorityClasses ({string.Join(", ", classes)}).");
            }

            if (a.MaxStarvation is { } starvation && starvation > TimeSpan.Zero && starvation >= a.QueueTimeout)
            {
                errors.Add($"{k}:MaxStarvation must be below {k}:QueueTimeout, or 00:00:00 for strict priority (was {raw?[$"{k}:MaxStarvation"] ?? starvation.ToString("c")} >= {a.QueueTimeout:c}): a waiter leaves at the queue timeout before it would age.");
            }

            if (a.FairShareHeadroom > 0 && a.FairShareHeadroom >= a.MaxInFlight)
            {
                errors.Add($"{k}:FairShareHeadroom must be below {k}:MaxInFlight (was {a.FairShareHeadroom} >= {a.MaxInFlight}): it is the part of the in-flight limit held back for keys under their fair share, and a key at its share needs at least one slot.");
            }

            if (a.FairShareHeadroom > 0 && a.Adaptive.Enabled && a.FairShareHeadroom >= a.Adaptive.MaxLimit)
            {
                errors.Add($"{k}:FairShareHeadroom must be below {k}:Adaptive:MaxLimit (was {a.FairShareHeadroom} >= {a.Adaptive.MaxLimit}): the adaptive limit never exceeds MaxLimit, so at most MaxLimit - 1 slots could ever be held back (and below that only the limit in force - 1).");
            }

            if (a.InputTokenWeight <= 0 && a.OutputTokenWeight <= 0)
            {
                errors.Add($"{k}:InputTokenWeight and {k}:OutputTokenWeight are both 0: the fair share would count nothing; give at least one a positive weight.");
            }

            if (a.Adaptive.MaxLimit < a.Adaptive.MinLimit)
            {
                errors.Add($"{k}:Adaptive:MaxLimit must be >= {k}:Adaptive:MinLimit (was {a.Adaptive.MaxLimit} < {a.Adaptive.MinLimit}).");
            }
        }

        foreach (var (key, priority) in o.KeyPriorities)
        {
            if (string.IsNullOrWhiteSpace(priority))
            {
                errors.Add($"{S}:KeyPriorities:{key} must name a priority class.");
            }
        }
    }

    private static void ValidatePolicy(string k, PolicyOptions p, ShapingOptions o, IConfiguration? raw, List<string> errors)
    {
        OptionsRanges.Check(s_policyRanges, k, p, raw, errors);
        if (!PartitionKey.TryParse(p.Partition, out _, out var partitionError))
        {
            errors.Add($"{k}:Partition '{p.Partition}' is invalid: {partitionError}.");
        }

        // A queue is kept by local, enforcing policies only: a shadow policy never makes a request wait, and a fleet-wide
        // decision is made at once (found by a stranger's review: such a QueueLimit started silently and did nothing).
        if (p.QueueLimit > 0 && (p.Shadow || (p.Scope == PolicyScope.Global && p.Kind != PolicyKind.Concurrency)))
        {
            errors.Add($"{k}:QueueLimit is read only by local policies that are not Shadow (was {p.QueueLimit}): " +
                (p.Shadow ? "a shadow policy never makes a request wait." : "a fleet-wide decision is made at once."));
        }

        // The values each kind reads must be > 0 (System.Threading.RateLimiting refuses 0 and negatives); a kind does
        // not read the others.
        switch (p.Kind)
        {
            case PolicyKind.TokenBucket:
                Positive(p.TokenLimit, $"{k}:TokenLimit", errors);
                Positive(p.TokensPerPeriod, $"{k}:TokensPerPeriod", errors);
                break;
            case PolicyKind.FixedWindow:
            case PolicyKind.SlidingWindow:
                Positive(p.PermitLimit, $"{k}:PermitLimit", errors);
                if (p.Kind == PolicyKind.SlidingWindow && p.EffectiveWindow.Ticks / Math.Max(1, p.SegmentsPerWindow) < TimeSpan.TicksPerMillisecond)
                {
                    errors.Add($"{k}:SegmentsPerWindow must leave each segment at least 1 ms of the Window (was {p.SegmentsPerWindow} segments of {p.EffectiveWindow:c}).");
                }

                break;
            case PolicyKind.Concurrency:
                Positive(p.PermitLimit, $"{k}:PermitLimit", errors);
                if (p.Scope != PolicyScope.Global && raw?[$"{k}:LeaseTtl"] is not null)
                {
                    errors.Add($"{k}:LeaseTtl is read only with Scope Global (a local Concurrency policy holds no leases in Redis).");
                }

                if (p.Scope == PolicyScope.Global && p.QueueLimit > 0)
                {
                    errors.Add($"{k}:QueueLimit must be 0 with Scope Global (was {p.QueueLimit}): fleet-wide leases are granted or refused at once.");
                }

                break;
            case PolicyKind.Tokens:
                if (p.Tokens > 0 && p.TokensPerMinute > 0)
                {
                    errors.Add($"{k}: set Tokens (per Window) or TokensPerMinute (its older spelling), not both (were {p.Tokens} and {p.TokensPerMinute}).");
                }
                else if (p.TokenBudget is <= 0 or > MaxTokensPerMinute)
                {
                    var key = p.TokensPerMinute != 0 || raw?[$"{k}:TokensPerMinute"] is not null ? "TokensPerMinute" : "Tokens";
                    errors.Add($"{k}:{key} must be > 0 and <= {MaxTokensPerMinute} (was {(p.TokensPerMinute != 0 ? p.TokensPerMinute : p.Tokens)}).");
                }

                if (p.TokensPerMinute > 0 && p.Window is { } w && w != TimeSpan.FromMinutes(1))
                {
                    errors.Add($"{k}:Window {w:c} contradicts TokensPerMinute: give the budget per window as {k}:Tokens.");
                }

                break;
            case PolicyKind.WebSocket:
                if (p.PermitLimit < 0)
                {
                    errors.Add($"{k}:PermitLimit must be >= 0 (was {p.PermitLimit}).");
                }

                if (p.MessagesPerConnection < 0)
                {
                    errors.Add($"{k}:MessagesPerConnection must be >= 0 (was {p.MessagesPerConnection}).");
                }

                if (p.PermitLimit == 0 && p.MessagesPerConnection == 0)
                {
                    errors.Add($"{k}: a WebSocket policy needs PermitLimit (connections at once) and/or MessagesPerConnection > 0.");
                }

                if (p.Scope == PolicyScope.Global)
                {
                    errors.Add($"{k}:Scope Global is not supported for WebSocket (connections are counted per gateway).");
                }

                break;
            default:
                errors.Add($"{k}:Kind '{p.Kind}' is not a policy kind (TokenBucket, FixedWindow, SlidingWindow, Concurrency, Tokens, WebSocket).");
                break;
        }

        if (raw is not null)
        {
            // A key the kind does not read would be silently ignored (a Tokens policy's Window was, once): say so.
            var read = KeysRead(p.Kind);
            foreach (var child in raw.GetSection(k).GetChildren())
            {
                if (read is not null && !read.Contains(child.Key))
                {
                    errors.Add($"{k}:{child.Key} is not read by a {p.Kind} policy (it reads {string.Join(", ", read)}).");
                }
            }
        }

        if (p.Scope == PolicyScope.Global && string.IsNullOrWhiteSpace(o.Redis))
        {
            errors.Add($"{k}:Scope is Global but {S}:Redis is not set: a fleet-wide policy needs Redis.");
        }
    }

    private static readonly string[] s_common = ["Kind", "Partition", "Scope", "FailMode", "Shadow"];

    /// <summary>The keys a policy kind reads (null for an unknown kind, reported elsewhere).</summary>
    private static HashSet<string>? KeysRead(PolicyKind kind)
    {
        string[]? own = kind switch
        {
            PolicyKind.TokenBucket => ["TokenLimit", "TokensPerPeriod", "ReplenishmentPeriod", "QueueLimit"],
            PolicyKind.FixedWindow => ["PermitLimit", "Window", "QueueLimit"],
            PolicyKind.SlidingWindow => ["PermitLimit", "Window", "SegmentsPerWindow", "QueueLimit"],
            PolicyKind.Concurrency => ["PermitLimit", "QueueLimit", "LeaseTtl"],
            PolicyKind.Tokens => ["Tokens", "TokensPerMinute", "Window"],
            PolicyKind.WebSocket => ["PermitLimit", "MessagesPerConnection", "QueueLimit"],
            _ => null,
        };
        return own is null ? null : new HashSet<string>([.. s_common, .. own], StringComparer.OrdinalIgnoreCase);
    }

    private static void Positive(long value, string key, List<string> errors)
    {
        if (value <= 0)
        {
            errors.Add($"{key} must be > 0 (was {value}).");
        }
    }
}

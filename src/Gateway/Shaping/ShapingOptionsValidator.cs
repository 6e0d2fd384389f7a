using Contracts.Recording;
using Microsoft.Extensions.Options;

namespace Gateway.Shaping;

/// <summary>Validates <see cref="ShapingOptions"/>, reporting every problem with its full key; used at start-up and on every reload.</summary>
internal sealed class ShapingOptionsValidator : IValidateOptions<ShapingOptions>
{
    private const string S = ShapingOptions.Section;

    public ValidateOptionsResult Validate(string? name, ShapingOptions options)
    {
        var errors = new List<string>();
        Validate(options, errors);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    public static void Validate(ShapingOptions o, List<string> errors)
    {
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

        if (o.Instances < 1)
        {
            errors.Add($"{S}:Instances must be >= 1 (was {o.Instances}).");
        }

        if (o.DefaultMaxTokens < 1)
        {
            errors.Add($"{S}:DefaultMaxTokens must be >= 1 (was {o.DefaultMaxTokens}).");
        }

        if (o.MaxInspectBytes < 0)
        {
            errors.Add($"{S}:MaxInspectBytes must be >= 0 (was {o.MaxInspectBytes}).");
        }

        if (o.RefusalLogInterval < TimeSpan.Zero)
        {
            errors.Add($"{S}:RefusalLogInterval must not be negative (was {o.RefusalLogInterval}).");
        }

        foreach (var (name, p) in o.Policies)
        {
            var k = $"{S}:Policies:{name}";
            if (!PartitionKey.TryParse(p.Partition, out _, out var partitionError))
            {
                errors.Add($"{k}:Partition '{p.Partition}' is invalid: {partitionError}.");
            }

            switch (p.Kind)
            {
                case PolicyKind.TokenBucket:
                    Positive(p.TokenLimit, $"{k}:TokenLimit", errors);
                    Positive(p.TokensPerPeriod, $"{k}:TokensPerPeriod", errors);
                    PositiveTime(p.ReplenishmentPeriod, $"{k}:ReplenishmentPeriod", errors);
                    break;
                case PolicyKind.FixedWindow:
                case PolicyKind.SlidingWindow:
                    Positive(p.PermitLimit, $"{k}:PermitLimit", errors);
                    PositiveTime(p.Window, $"{k}:Window", errors);
                    if (p.Kind == PolicyKind.SlidingWindow)
                    {
                        Positive(p.SegmentsPerWindow, $"{k}:SegmentsPerWindow", errors);
                    }

                    break;
                case PolicyKind.Concurrency:
                    Positive(p.PermitLimit, $"{k}:PermitLimit", errors);
                    if (p.Scope == PolicyScope.Global)
                    {
                        errors.Add($"{k}:Scope Global is not supported for Concurrency (in-flight counts are per gateway; use Admission for a cluster's in-flight cap).");
                    }

                    break;
                case PolicyKind.Tokens:
                    if (p.TokensPerMinute <= 0)
                    {
                        errors.Add($"{k}:TokensPerMinute must be > 0 (was {p.TokensPerMinute}).");
                    }

                    break;
                case PolicyKind.WebSocket:
                    if (p.PermitLimit <= 0 && p.MessagesPerConnection <= 0)
                    {
                        errors.Add($"{k}: a WebSocket policy needs PermitLimit (connections at once) and/or MessagesPerConnection > 0.");
                    }

                    if (p.PermitLimit < 0 || p.MessagesPerConnection < 0)
                    {
                        errors.Add($"{k}:PermitLimit and MessagesPerConnection must not be negative (were {p.PermitLimit}, {p.MessagesPerConnection}).");
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

            if (p.QueueLimit < 0)
            {
                errors.Add($"{k}:QueueLimit must be >= 0 (was {p.QueueLimit}).");
            }

            if (p.Scope == PolicyScope.Global && string.IsNullOrWhiteSpace(o.Redis))
            {
                errors.Add($"{k}:Scope is Global but {S}:Redis is not set: a fleet-wide policy needs Redis.");
            }
        }

        foreach (var (cluster, a) in o.Admission)
        {
            var k = $"{S}:Admission:{cluster}";
            Positive(a.MaxInFlight, $"{k}:MaxInFlight", errors);
            if (a.QueueLimit < 0)
            {
                errors.Add($"{k}:QueueLimit must be >= 0 (was {a.QueueLimit}).");
            }

            if (a.QueueTimeout < TimeSpan.Zero)
            {
                errors.Add($"{k}:QueueTimeout must not be negative (was {a.QueueTimeout}).");
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

            if (a.Adaptive.Enabled)
            {
                Positive(a.Adaptive.MinLimit, $"{k}:Adaptive:MinLimit", errors);
                if (a.Adaptive.MaxLimit < a.Adaptive.MinLimit)
                {
                    errors.Add($"{k}:Adaptive:MaxLimit must be >= MinLimit (was {a.Adaptive.MaxLimit} < {a.Adaptive.MinLimit}).");
                }

                if (a.Adaptive.Tolerance < 1)
                {
                    errors.Add($"{k}:Adaptive:Tolerance must be >= 1 (was {a.Adaptive.Tolerance}).");
                }

                if (a.Adaptive.Smoothing is <= 0 or > 1)
                {
                    errors.Add($"{k}:Adaptive:Smoothing must be in (0, 1] (was {a.Adaptive.Smoothing}).");
                }

                PositiveTime(a.Adaptive.SampleWindow, $"{k}:Adaptive:SampleWindow", errors);
                PositiveTime(a.Adaptive.MinRttInterval, $"{k}:Adaptive:MinRttInterval", errors);
                Positive(a.Adaptive.MinRttSamples, $"{k}:Adaptive:MinRttSamples", errors);
            }

            if (a.CircuitBreaker.Enabled)
            {
                if (a.CircuitBreaker.FailureRatio is <= 0 or > 1)
                {
                    errors.Add($"{k}:CircuitBreaker:FailureRatio must be in (0, 1] (was {a.CircuitBreaker.FailureRatio}).");
                }

                if (a.CircuitBreaker.MinimumThroughput < 2)
                {
                    errors.Add($"{k}:CircuitBreaker:MinimumThroughput must be >= 2 (was {a.CircuitBreaker.MinimumThroughput}).");
                }

                if (a.CircuitBreaker.SamplingDuration < TimeSpan.FromMilliseconds(500))
                {
                    errors.Add($"{k}:CircuitBreaker:SamplingDuration must be at least 00:00:00.5 (was {a.CircuitBreaker.SamplingDuration}).");
                }

                if (a.CircuitBreaker.BreakDuration < TimeSpan.FromMilliseconds(500))
                {
                    errors.Add($"{k}:CircuitBreaker:BreakDuration must be at least 00:00:00.5 (was {a.CircuitBreaker.BreakDuration}).");
                }
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

    private static void Positive(long value, string key, List<string> errors)
    {
        if (value <= 0)
        {
            errors.Add($"{key} must be > 0 (was {value}).");
        }
    }

    private static void PositiveTime(TimeSpan value, string key, List<string> errors)
    {
        if (value <= TimeSpan.Zero)
        {
            errors.Add($"{key} must be a positive duration (was {value}).");
        }
    }
}

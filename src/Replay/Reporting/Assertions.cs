using System.Globalization;
using System.Text.RegularExpressions;

namespace Replay.Reporting;

/// <summary>
/// <c>--assert "p95&lt;500ms"</c>: a bound on one figure of the report; any failed assertion makes the exit code 1.
/// Times are compared in milliseconds (units <c>us</c>, <c>ms</c>, <c>s</c>); fractions (<c>error_rate</c>,
/// <c>goodput</c>) accept <c>%</c>; counts and rates take a plain number.
/// </summary>
internal sealed partial record Assertion(string Text, string Metric, string Operator, double Value)
{
    private static readonly string[] s_percentiles = ["p50", "p90", "p95", "p99", "p999", "max", "mean"];
    private static readonly string[] s_prefixes = ["", "latency_", "ttft_", "itl_", "lag_", "schedule_lag_", "service_", "success_"];
    private static readonly string[] s_plain =
    [
        "requests", "sent", "failures", "achieved_rps", "intended_rps", "throughput_rps", "goodput_rps", "goodput_scheduled_rps", "refused", "timeouts",
        "connection_errors", "status_errors", "status_mismatches", "body_differences", "skipped_records", "output_tokens", "tokens_per_s", "ws_messages_sent", "ws_messages_received",
    ];

    private static readonly string[] s_fractions = ["error_rate", "goodput", "refused_rate"];

    [GeneratedRegex(@"^\s*([a-z0-9_]+)\s*(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?)\s*(us|µs|ms|s|%)?\s*$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex Pattern();

    /// <summary>Every metric name an assertion may use.</summary>
    public static IEnumerable<string> KnownMetrics()
    {
        foreach (var prefix in s_prefixes)
        {
            foreach (var p in s_percentiles)
            {
                yield return prefix + p;
            }
        }

        foreach (var p in s_plain)
        {
            yield return p;
        }

        foreach (var f in s_fractions)
        {
            yield return f;
        }
    }

    /// <summary>Parses an assertion; null with a message naming <c>--assert</c> when it is malformed.</summary>
    public static Assertion? TryParse(string text, out string? error)
    {
        error = null;
        var m = Pattern().Match(text);
        if (!m.Success)
        {
            error = $"--assert '{text}' is not METRIC OP VALUE[UNIT] (e.g. \"p95<500ms\", \"error_rate<1%\", \"achieved_rps>=1500\").";
            return null;
        }

        var metric = m.Groups[1].Value.ToLowerInvariant();
        if (!KnownMetrics().Contains(metric))
        {
            error = $"--assert '{text}': unknown metric '{metric}' (known: {string.Join(", ", KnownMetrics())}).";
            return null;
        }

        var value = double.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
        var unit = m.Groups[4].Success ? m.Groups[4].Value.ToLowerInvariant() : string.Empty;
        var isTime = Array.Exists(s_percentiles, p => metric.EndsWith(p, StringComparison.Ordinal)) && !metric.StartsWith("tokens", StringComparison.Ordinal);
        var isFraction = Array.IndexOf(s_fractions, metric) >= 0;
        switch (unit)
        {
            case "%" when isFraction:
                value /= 100;
                break;
            case "s" when isTime:
                value *= 1000;
                break;
            case "us" or "µs" when isTime:
                value /= 1000;
                break;
            case "ms" when isTime:
            case "" when !isTime:
                break;
            case "":
                error = $"--assert '{text}': give a unit for a time (us, ms or s).";
                return null;
            default:
                error = $"--assert '{text}': unit '{unit}' does not fit metric '{metric}'.";
                return null;
        }

        return new Assertion(text.Trim(), metric, m.Groups[2].Value, value);
    }

    /// <summary>Evaluates against a finished report.</summary>
    public AssertionReport Evaluate(RunReport report)
    {
        var actual = Lookup(report, Metric);
        if (actual is null)
        {
            return new AssertionReport(Text, null, false, $"no data for '{Metric}' in this run");
        }

        var a = actual.Value;
        var passed = Operator switch
        {
            "<" => a < Value,
            "<=" => a <= Value,
            ">" => a > Value,
            ">=" => a >= Value,
            "==" => Math.Abs(a - Value) < 1e-9,
            _ => Math.Abs(a - Value) >= 1e-9,
        };
        return new AssertionReport(Text, a, passed, null);
    }

    /// <summary>A figure of the report by assertion name (times in ms, fractions 0..1); null when the run has none (e.g. TTFT without streams).</summary>
    internal static double? Lookup(RunReport r, string metric)
    {
        switch (metric)
        {
            case "requests": return r.Requests;
            case "sent": return r.Sent;
            case "failures": return r.Failures;
            case "achieved_rps": return r.AchievedRps;
            case "intended_rps": return r.IntendedRps;
            case "throughput_rps": return r.ThroughputRps;
            case "goodput_rps": return r.GoodputRps;
            case "goodput_scheduled_rps": return r.GoodputScheduledRps;
            case "goodput": return r.GoodFraction;
            case "error_rate": return r.ErrorRate;
            case "refused": return r.FailuresByKind["refused"];
            case "refused_rate": return r.Requests == 0 ? 0 : (double)r.FailuresByKind["refused"] / r.Requests;
            case "timeouts": return r.FailuresByKind["timeout"];
            case "connection_errors": return r.FailuresByKind["connection"];
            case "status_errors": return r.FailuresByKind["status"];
            case "status_mismatches": return r.StatusMismatches;
            case "body_differences": return r.BodyDifferences;
            case "skipped_records": return r.SkippedRecords;
            case "output_tokens": return r.OutputTokens;
            case "tokens_per_s": return r.OutputTokensPerSecond;
            case "ws_messages_sent": return r.WebSocketMessagesSent;
            case "ws_messages_received": return r.WebSocketMessagesReceived;
        }

        var underscore = metric.LastIndexOf('_');
        var prefix = underscore < 0 ? string.Empty : metric[..underscore];
        var percentile = underscore < 0 ? metric : metric[(underscore + 1)..];
        var p = prefix switch
        {
            "" or "latency" => r.Latency,
            "ttft" => r.Ttft,
            "itl" => r.Itl,
            "lag" or "schedule_lag" => r.ScheduleLag,
            "service" => r.ServiceTime,
            "success" => r.SuccessLatency,
            _ => null,
        };
        if (p is null || p.Count == 0)
        {
            return null;
        }

        return percentile switch
        {
            "p50" => p.P50,
            "p90" => p.P90,
            "p95" => p.P95,
            "p99" => p.P99,
            "p999" => p.P999,
            "max" => p.Max,
            _ => p.Mean,
        };
    }
}

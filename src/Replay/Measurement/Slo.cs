using System.Globalization;
using System.Text.RegularExpressions;

namespace Replay.Measurement;

/// <summary>What an SLO bounds, per request.</summary>
internal enum SloMetric
{
    /// <summary>Time to first token, from the intended send time.</summary>
    Ttft,

    /// <summary>End-to-end latency, from the intended send time.</summary>
    E2e,

    /// <summary>Mean inter-token time of the request (time per output token after the first).</summary>
    Itl,
}

/// <summary>
/// A service-level objective such as <c>ttft_p95&lt;500ms</c>: each request meets it when its own value is under the
/// threshold; the objective holds when at least the given percentile of requests meet it (every request when no
/// percentile is given). Goodput counts the requests that met every SLO (as DistServe and vLLM's benchmark define it).
/// </summary>
/// <param name="Text">As given on the command line.</param>
/// <param name="Metric">The per-request quantity.</param>
/// <param name="Percentile">Required share of requests meeting it, in percent (100 when not given).</param>
/// <param name="ThresholdMicros">The bound in microseconds.</param>
/// <param name="Inclusive">True for <c>&lt;=</c>.</param>
internal sealed partial record Slo(string Text, SloMetric Metric, double Percentile, long ThresholdMicros, bool Inclusive)
{
    [GeneratedRegex(@"^\s*(ttft|e2e|latency|itl|tpot)(?:_p(\d+(?:\.\d+)?))?\s*(<=|<)\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s)\s*$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex Pattern();

    /// <summary>Parses <paramref name="text"/>; null with a message naming <c>--slo</c> when it is malformed.</summary>
    public static Slo? TryParse(string text, out string? error)
    {
        var m = Pattern().Match(text);
        error = null;
        if (!m.Success)
        {
            error = $"--slo '{text}' is not METRIC[_pNN]<VALUE UNIT (METRIC: ttft, e2e, latency, itl, tpot; UNIT: us, ms, s), e.g. --slo \"ttft_p95<500ms\".";
            return null;
        }

        var metric = m.Groups[1].Value.ToLowerInvariant() switch
        {
            "ttft" => SloMetric.Ttft,
            "itl" or "tpot" => SloMetric.Itl,
            _ => SloMetric.E2e,
        };
        var percentile = m.Groups[2].Success ? double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture) : 100;
        if (percentile is <= 0 or > 100)
        {
            error = $"--slo '{text}': the percentile must be between 0 and 100.";
            return null;
        }

        var value = double.Parse(m.Groups[4].Value, CultureInfo.InvariantCulture);
        var micros = m.Groups[5].Value.ToLowerInvariant() switch
        {
            "s" => value * 1_000_000,
            "ms" => value * 1000,
            _ => value,
        };
        return new Slo(text.Trim(), metric, percentile, (long)Math.Round(micros), m.Groups[3].Value == "<=");
    }

    /// <summary>Whether a value (µs) meets the bound.</summary>
    public bool Meets(long micros) => Inclusive ? micros <= ThresholdMicros : micros < ThresholdMicros;
}

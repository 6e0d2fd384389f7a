using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Gateway.Routing.InferenceAware;

/// <summary>Why a scrape of a destination's metrics failed: the <c>reason</c> tag of <c>gateway.routing.scrape.failures</c>.</summary>
internal enum ScrapeFailure
{
    /// <summary>No answer within <c>MetricsTimeout</c>.</summary>
    Timeout,

    /// <summary>The connection failed.</summary>
    Unreachable,

    /// <summary>A status other than 2xx.</summary>
    Status,

    /// <summary>The body had no <c>vllm:num_requests_*</c> series (or was larger than the scraper reads).</summary>
    Unparsable,
}

/// <summary>
/// The <c>InferenceAware</c> policy's instruments, on the gateway's meter: decisions by cluster and reason, destinations
/// scored without fresh metrics, scrape failures. Tags are cluster ids (configured) and fixed reason names.
/// </summary>
internal sealed class InferenceAwareMetrics
{
    private static readonly string[] s_reasons = ["prefix_hit", "load", "fallback"];
    private static readonly string[] s_failures = ["timeout", "unreachable", "status", "unparsable"];

    private readonly Counter<long> _decisions;
    private readonly Counter<long> _stale;
    private readonly Counter<long> _scrapeFailures;

    public InferenceAwareMetrics(Telemetry.GatewayMetrics metrics)
    {
        var meter = metrics.Meter;
        _decisions = meter.CreateCounter<long>("gateway.routing.decisions", "{decision}",
            "Replicas chosen by the InferenceAware policy, by cluster and reason (prefix_hit, load: the prefix's replica was over the load bound, fallback: no replica held the prefix).");
        _stale = meter.CreateCounter<long>("gateway.routing.stale_scores", "{destination}",
            "Destinations the InferenceAware policy scored by the gateway's in-flight count alone because their metrics were stale or unreadable, one per destination per decision, by cluster.");
        _scrapeFailures = meter.CreateCounter<long>("gateway.routing.scrape.failures", "{scrape}",
            "Scrapes of a destination's vLLM metrics that failed, by cluster and reason (timeout, unreachable, status, unparsable).");
    }

    /// <summary>Counts a decision.</summary>
    public void Decision(string cluster, PickReason reason)
    {
        if (_decisions.Enabled)
        {
            _decisions.Add(1, new TagList { { "cluster", cluster }, { "reason", s_reasons[(int)reason] } });
        }
    }

    /// <summary>Counts <paramref name="count"/> destinations scored without fresh metrics in one decision.</summary>
    public void Stale(string cluster, int count)
    {
        if (count > 0 && _stale.Enabled)
        {
            _stale.Add(count, new KeyValuePair<string, object?>("cluster", cluster));
        }
    }

    /// <summary>Counts a failed scrape.</summary>
    public void ScrapeFailed(string cluster, ScrapeFailure reason)
    {
        if (_scrapeFailures.Enabled)
        {
            _scrapeFailures.Add(1, new TagList { { "cluster", cluster }, { "reason", s_failures[(int)reason] } });
        }
    }
}

using Replay.Measurement;

namespace Replay.Capacity;

/// <summary>
/// What one step of a sweep measured: an open-model constant rate held for the step's length.
/// </summary>
/// <remarks>
/// Goodput and throughput are counted by <em>completion</em> time over the step's steady window (its seconds after the
/// first), so they show what the target sustains: an overloaded target completes no more than its capacity however
/// much is offered, and completes fewer good requests once its queue pushes latency past the SLOs. Latency and SLO
/// figures cover every request the step sent, measured from its intended send time.
/// </remarks>
/// <param name="Rate">Offered arrival rate, requests/s.</param>
/// <param name="Seconds">Length of the step, s.</param>
/// <param name="Sent">Requests sent.</param>
/// <param name="Completed">Requests completed (in any way).</param>
/// <param name="Failures">Requests that failed.</param>
/// <param name="GoodputRps">Requests/s that succeeded and met every SLO, over the steady window.</param>
/// <param name="ThroughputRps">Completions/s over the steady window.</param>
/// <param name="GoodFraction">Share of the step's requests that were good.</param>
/// <param name="Latency">Latency from the intended send time, ms.</param>
/// <param name="ServiceTime">Latency from the actual send, ms.</param>
/// <param name="Ttft">Time to first token, ms (null without streams).</param>
/// <param name="SlosMet">Per SLO: whether it held in this step.</param>
internal sealed record SweepStep(
    double Rate,
    double Seconds,
    long Sent,
    long Completed,
    long Failures,
    double GoodputRps,
    double ThroughputRps,
    double GoodFraction,
    Reporting.Percentiles Latency,
    Reporting.Percentiles ServiceTime,
    Reporting.Percentiles? Ttft,
    IReadOnlyList<bool> SlosMet)
{
    /// <summary>The step's prefix cache figures (the model servers' counters before and after it), or null when they expose none.</summary>
    public PrefixCacheReport? PrefixCache { get; init; }

    /// <summary>Mean requests in flight at the target during the step, by Little's law: throughput × mean service time.</summary>
    public double MeanInFlight => ThroughputRps * ServiceTime.Mean / 1000.0;

    /// <summary>Reads a finished step's measurements.</summary>
    /// <param name="metrics">The step's metrics (its own instance).</param>
    /// <param name="rate">The offered rate.</param>
    /// <param name="seconds">The step's length.</param>
    public static SweepStep From(RunMetrics metrics, double rate, double seconds)
    {
        var series = metrics.FinishSeries();
        var whole = Math.Max(1, (int)Math.Floor(seconds + 1e-9));
        var first = whole >= 2 ? 1 : 0; // the first second fills the pipeline: completions lag the arrivals
        long good = 0, completed = 0;
        for (var i = first; i < whole && i < series.Count; i++)
        {
            good += series[i].Good;
            completed += series[i].Completed;
        }

        var window = whole - first;
        var met = new bool[metrics.Slos.Count];
        for (var i = 0; i < met.Length; i++)
        {
            met[i] = metrics.Completed > 0 && (double)metrics.SloMet(i) / metrics.Completed >= (metrics.Slos[i].Percentile / 100) - 1e-12;
        }

        var goodTotal = metrics.Slos.Count == 0 ? metrics.Completed - metrics.Failures : metrics.Good;
        return new SweepStep(
            rate,
            seconds,
            metrics.Sent,
            metrics.Completed,
            metrics.Failures,
            (double)good / window,
            (double)completed / window,
            metrics.Completed == 0 ? 0 : (double)goodTotal / metrics.Completed,
            Reporting.Percentiles.From(metrics.Latency),
            Reporting.Percentiles.From(metrics.ServiceTime),
            metrics.Ttft.TotalCount > 0 ? Reporting.Percentiles.From(metrics.Ttft) : null,
            met);
    }
}

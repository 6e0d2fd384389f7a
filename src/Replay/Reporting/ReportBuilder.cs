using Replay.Measurement;
using Replay.Scheduling;
using Replay.Sources;

namespace Replay.Reporting;

/// <summary>Turns a finished run's <see cref="RunMetrics"/> into a <see cref="RunReport"/>.</summary>
internal static class ReportBuilder
{
    private static readonly double[] s_distribution = [0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96, 97, 98, 99, 99.5, 99.9, 99.95, 99.99, 100];

    /// <summary>What the report says about the run besides the measurements.</summary>
    internal sealed record Context(string Command, RunPlan Plan, Workload Workload, string Target, DateTimeOffset StartedAt, double Speed, double Amplify, bool Compare, bool Cancelled);

    /// <summary>Builds the report; call after the run ended.</summary>
    public static RunReport Build(RunMetrics m, Context c, long endTimestamp)
    {
        var series = m.FinishSeries();
        var duration = Math.Max(1e-3, m.SecondsSinceStart(endTimestamp));
        var sent = m.Sent;
        var intended = m.Intended;
        double nominal = c.Plan.NominalSeconds;
        var intendedSpan = Window(m.SecondsSinceStart(m.LastIntendedTimestamp), intended);
        if (!(nominal > 0))
        {
            // The schedule's own span (a recording's starts over --speed), not when the requests were due in this run:
            // a slow target delays a session's later requests, and their intended times with them, so the span of the
            // intended times grew with the lag and intended_rps came out equal to achieved_rps, hiding that the run
            // fell behind (stranger review of issue 16; docs/replay.md "Rates").
            nominal = c.Plan.ScheduledSeconds > 0 ? c.Plan.ScheduledSeconds : intendedSpan;
        }

        nominal = Math.Max(nominal, 1e-3);
        var actualWindow = Math.Max(nominal, Window(m.SecondsSinceStart(m.LastSentTimestamp), sent));
        var scheduled = c.Plan.ScheduledSeconds > 0 ? c.Plan.ScheduledSeconds : nominal;
        var achieved = sent / actualWindow;
        var intendedRps = c.Plan.Mode == RunMode.Closed ? achieved : (c.Plan.PlannedRequests ?? intended) / nominal;
        var completed = m.Completed;
        var slos = new List<SloReport>();
        for (var i = 0; i < m.Slos.Count; i++)
        {
            var met = m.SloMet(i);
            var attainment = completed == 0 ? 0 : (double)met / completed;
            var required = m.Slos[i].Percentile / 100;
            slos.Add(new SloReport(m.Slos[i].Text, met, attainment, required, attainment >= required - 1e-12));
        }

        var kinds = new Dictionary<string, long>(StringComparer.Ordinal)
        {
            ["status"] = m.FailuresOf(FailureKind.Status),
            ["timeout"] = m.FailuresOf(FailureKind.Timeout),
            ["connection"] = m.FailuresOf(FailureKind.Connection),
            ["refused"] = m.FailuresOf(FailureKind.Refused),
            ["generator"] = m.FailuresOf(FailureKind.Generator),
        };

        var distribution = new List<(double, double)>(s_distribution.Length);
        foreach (var p in s_distribution)
        {
            distribution.Add((p, p == 0 ? (m.Latency.TotalCount == 0 ? 0 : m.Latency.LowestEquivalentValue(m.Latency.GetValueAtPercentile(0)) / 1000.0) : Histograms.Ms(m.Latency, p)));
        }

        var good = m.Slos.Count == 0 ? completed - m.Failures : m.Good;
        return new RunReport
        {
            Command = c.Command,
            Mode = c.Plan.Mode.ToString().ToLowerInvariant(),
            Source = c.Workload.Description,
            Target = c.Target,
            Profile = c.Plan.Profile is { } profile ? $"{profile.Description}, {c.Plan.Arrivals.ToString().ToLowerInvariant()} arrivals{(c.Plan.Arrivals == ArrivalKind.Gamma ? $" (burstiness {c.Plan.Burstiness})" : string.Empty)}" : null,
            StartedAt = c.StartedAt,
            DurationSeconds = duration,
            SendWindowSeconds = actualWindow,
            ScheduledWindowSeconds = scheduled,
            Speed = c.Speed,
            Amplify = c.Amplify,
            Users = c.Plan.Mode == RunMode.Closed ? c.Plan.Users : null,
            Requests = completed,
            Planned = c.Plan.PlannedRequests ?? intended,
            Sent = sent,
            Succeeded = completed - m.Failures,
            Failures = m.Failures,
            ErrorRate = completed == 0 ? 0 : (double)m.Failures / completed,
            FailuresByKind = kinds,
            IntendedRps = intendedRps,
            AchievedRps = achieved,
            ThroughputRps = completed / duration,
            Latency = Percentiles.From(m.Latency),
            SuccessLatency = Percentiles.From(m.SuccessLatency),
            ServiceTime = Percentiles.From(m.ServiceTime),
            ScheduleLag = Percentiles.From(m.ScheduleLag),
            Ttft = m.Ttft.TotalCount > 0 ? Percentiles.From(m.Ttft) : null,
            Itl = m.InterToken.TotalCount > 0 ? Percentiles.From(m.InterToken) : null,
            StreamTokensPerSecond = m.StreamTokensPerSecond.TotalCount > 0 ? Scale(Percentiles.From(m.StreamTokensPerSecond)) : null,
            OutputTokens = m.OutputTokens,
            OutputTokensPerSecond = m.OutputTokens / duration,
            WebSocketMessagesSent = m.WebSocketMessagesSent,
            WebSocketMessagesReceived = m.WebSocketMessagesReceived,
            UnparseableEvents = m.UnparseableEvents,
            FirstUnparseable = m.FirstUnparseable,
            ByStatus = Groups(m.ByStatus()),
            ByRoute = Groups(m.ByRoute()),
            RefusedByLimit = Groups(m.RefusedByLimit()),
            Slos = slos,
            Good = good,
            GoodputRps = good / actualWindow,
            GoodputScheduledRps = good / scheduled,
            GoodFraction = completed == 0 ? 0 : (double)good / completed,
            CompareEnabled = c.Compare,
            Compared = m.Compared,
            StatusMismatches = m.StatusMismatches,
            BodyDifferences = m.BodyDifferences,
            SkippedRecords = c.Workload.SkippedTotal,
            SourceTimeRemovedSeconds = c.Workload.SourceTimeRemovedMs / 1000,
            OutOfOrder = c.Workload.OutOfOrder,
            Skipped = c.Workload.Skipped,
            Series = Seconds(series),
            Distribution = distribution,
            Cancelled = c.Cancelled,
        };
    }

    /// <summary>The span of n evenly spread events whose last one is at <paramref name="last"/> seconds: last × n / (n − 1).</summary>
    private static double Window(double last, long n) => n <= 1 ? last : last * n / (n - 1);

    /// <summary>The tokens/s histogram holds milli-tokens per second; its "ms" figures are therefore tokens/s already (÷1000 twice cancels).</summary>
    private static Percentiles Scale(Percentiles p) => p;

    private static List<GroupReport> Groups(IReadOnlyList<KeyValuePair<string, RunMetrics.Group>> groups)
    {
        var list = new List<GroupReport>(groups.Count);
        foreach (var (key, g) in groups)
        {
            list.Add(new GroupReport(key, g.Count, g.Failures, Percentiles.From(g.Latency)));
        }

        return list;
    }

    private static List<SecondReport> Seconds(IReadOnlyList<RunMetrics.SecondBucket> buckets)
    {
        var list = new List<SecondReport>(buckets.Count);
        for (var i = 0; i < buckets.Count; i++)
        {
            var b = buckets[i];
            list.Add(new SecondReport(i, b.Intended, b.Sent, b.Completed, b.Failures, b.Refused, b.Tokens, b.P50, b.P95, b.P99, b.Max, b.LagMax)
            {
                StatusErrors = b.StatusErrors,
                Timeouts = b.Timeouts,
                ConnectionErrors = b.ConnectionErrors,
                TtftP50 = b.TtftP50,
                TtftP95 = b.TtftP95,
                ItlP50 = b.ItlP50,
                ItlP95 = b.ItlP95,
                RefusedByLimit = b.RefusedByLimit is { } limits ? new Dictionary<string, long>(limits, StringComparer.Ordinal) : new Dictionary<string, long>(),
            });
        }

        return list;
    }
}

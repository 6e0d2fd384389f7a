using System.Text.Json;

namespace Replay.Reporting;

/// <summary>
/// <c>report.json</c>: a <see cref="RunReport"/> as its one record type, <see cref="ReportDocument"/>, through the
/// source-generated <see cref="ReportJsonContext"/> (snake_case, milliseconds for times, figures rounded to 3 decimals);
/// <see cref="ReadAsync"/> reads it back the same way for <c>replay compare</c>. docs/replay.md lists every field.
/// </summary>
internal static class ReportJson
{
    /// <summary>The report as UTF-8 JSON.</summary>
    public static byte[] Serialize(RunReport r) => JsonSerializer.SerializeToUtf8Bytes(ToDocument(r), ReportJsonContext.Default.ReportDocument);

    /// <summary>Reads a report.json.</summary>
    /// <exception cref="JsonException">Not JSON, or not of this shape.</exception>
    public static async ValueTask<ReportDocument?> ReadAsync(Stream json, CancellationToken cancellationToken) =>
        await JsonSerializer.DeserializeAsync(json, ReportJsonContext.Default.ReportDocument, cancellationToken).ConfigureAwait(false);

    /// <summary>The document of a report.</summary>
    public static ReportDocument ToDocument(RunReport r) => new()
    {
        Command = r.Command,
        Mode = r.Mode,
        Source = r.Source,
        Target = r.Target,
        Profile = r.Profile,
        StartedAt = r.StartedAt,
        DurationS = Round(r.DurationSeconds),
        SendWindowS = Round(r.SendWindowSeconds),
        ScheduledWindowS = Round(r.ScheduledWindowSeconds),
        Speed = r.Speed,
        Amplify = r.Amplify,
        Users = r.Users,
        Cancelled = r.Cancelled,
        Requests = r.Requests,
        Planned = r.Planned,
        PeakConcurrentSessions = r.PeakConcurrentSessions,
        Sent = r.Sent,
        Succeeded = r.Succeeded,
        Failures = r.Failures,
        ErrorRate = Round(r.ErrorRate),
        FailuresByKind = new Dictionary<string, long>(r.FailuresByKind, StringComparer.Ordinal),
        IntendedRps = Round(r.IntendedRps),
        AchievedRps = Round(r.AchievedRps),
        ThroughputRps = Round(r.ThroughputRps),
        LatencyMs = Percentiles(r.Latency),
        SuccessLatencyMs = Percentiles(r.SuccessLatency),
        ServiceTimeMs = Percentiles(r.ServiceTime),
        ScheduleLagMs = Percentiles(r.ScheduleLag),
        TtftMs = Percentiles(r.Ttft),
        ItlMs = Percentiles(r.Itl),
        StreamTokensPerS = Percentiles(r.StreamTokensPerSecond),
        OutputTokens = r.OutputTokens,
        OutputTokensPerS = Round(r.OutputTokensPerSecond),
        WebsocketMessages = new WebSocketMessagesDocument(r.WebSocketMessagesSent, r.WebSocketMessagesReceived),
        UnparseableEvents = new UnparseableDocument(r.UnparseableEvents, r.FirstUnparseable),
        ByStatus = Groups(r.ByStatus),
        ByRoute = Groups(r.ByRoute),
        RefusedByLimit = Groups(r.RefusedByLimit),
        Goodput = new GoodputDocument(r.Good, Round(r.GoodputRps), Round(r.GoodFraction),
            [.. r.Slos.Select(static s => new SloDocument(s.Slo, s.Met, Round(s.Attainment), Round(s.Required), s.Passed))])
        {
            ScheduledRps = Round(r.GoodputScheduledRps),
        },
        Comparison = r.CompareEnabled ? new ComparisonDocument(r.Compared, r.StatusMismatches, r.BodyDifferences) : null,
        Generator = r.Generator is { } g ? new GeneratorDocument(g.Gen0, g.Gen1, g.Gen2, Round(g.GcPauseMs), Round(g.CpuSeconds), Round(g.PeakWorkingSetMb), g.Cores) : null,
        Connections = r.Connections is { } c ? new ConnectionsDocument(c.Limit, c.OpenFileLimit, c.PeakInUse, c.Waits) : null,
        Conversations = r.Conversations is { } v
            ? new ConversationsDocument(v.Conversations, v.Turns, v.Generated, v.CacheHits, v.Failures, v.FirstFailure, v.Digest, [.. v.Sample]) { CacheFile = v.CacheFile }
            : null,
        PrefixCacheHitRate = r.PrefixCache?.HitRate is { } rate ? Round(rate) : null,
        PrefixCache = r.PrefixCache is { } pc ? new PrefixCacheDocument(pc.Queries, pc.Hits, [.. pc.MetricsUrls]) { Partial = pc.Partial, FailedMetricsUrls = pc.Partial ? [.. pc.Failed] : null } : null,
        Workers = r.Workers is { } w ? new WorkersDocument(w.RunId, w.Workers, [.. w.Names], w.Slices, w.TakenOver, w.LostSessions, w.MissingSlices) : null,
        SourceTimeRemovedS = Round(r.SourceTimeRemovedSeconds),
        OutOfOrderRecords = r.OutOfOrder is { } o ? new OutOfOrderDocument(o.Records, o.LargestDisplacement, Round(o.LargestMs)) : null,
        SkippedRecords = r.SkippedRecords,
        Skipped = [.. r.Skipped.Select(static s => new SkippedDocument(s.Position, s.Reason))],
        Assertions = [.. r.Assertions.Select(static a => new AssertionDocument(a.Expression, a.Actual is { } x ? Round(x) : null, a.Passed) { Error = a.Error })],
        LatencyDistribution = [.. r.Distribution.Select(static d => new DistributionPoint(d.Percentile, Round(d.Ms)))],
        Series = [.. r.Series.Select(static s => new SecondDocument(
            s.T, s.Intended, s.Sent, s.Completed, s.Failures, s.Refused, s.StatusErrors, s.Timeouts, s.ConnectionErrors,
            new Dictionary<string, long>(s.RefusedByLimit, StringComparer.Ordinal), s.Tokens,
            Round(s.P50), Round(s.P95), Round(s.P99), Round(s.Max), Round(s.LagMax),
            Round(s.TtftP50), Round(s.TtftP95), Round(s.ItlP50), Round(s.ItlP95)))],
    };

    private static PercentilesDocument? Percentiles(Percentiles? p) =>
        p is null ? null : new PercentilesDocument(p.Count, Round(p.P50), Round(p.P90), Round(p.P95), Round(p.P99), Round(p.P999), Round(p.Max), Round(p.Mean));

    private static Dictionary<string, GroupDocument> Groups(IReadOnlyList<GroupReport> groups)
    {
        var result = new Dictionary<string, GroupDocument>(groups.Count, StringComparer.Ordinal);
        foreach (var g in groups)
        {
            result[g.Key] = new GroupDocument(g.Count, g.Failures, Percentiles(g.Latency)!);
        }

        return result;
    }

    private static double Round(double value) => double.IsFinite(value) ? Math.Round(value, 3) : 0;
}

using System.Globalization;

namespace Replay.Reporting;

/// <summary>The plain-text summary printed at the end of a run.</summary>
internal static class SummaryWriter
{
    /// <summary>Writes it.</summary>
    public static void Write(TextWriter o, RunReport r)
    {
        var c = CultureInfo.InvariantCulture;
        o.WriteLine();
        o.WriteLine(string.Create(c, $"{r.Command} ({r.Mode}) {r.Source} -> {r.Target}{(r.Profile is null ? string.Empty : $" [{r.Profile}]")}{(r.Cancelled ? " (cancelled)" : string.Empty)}"));
        o.WriteLine(string.Create(c, $"  requests      {r.Requests} in {r.DurationSeconds:0.###} s ({r.Sent} sent, {r.Succeeded} ok{(r.PeakConcurrentSessions > 0 ? $"; at most {r.PeakConcurrentSessions} sessions at once" : string.Empty)})"));
        o.WriteLine(string.Create(c, $"  failures      {r.Failures} ({r.ErrorRate * 100:0.##}%): status {r.FailuresByKind["status"]}, timeout {r.FailuresByKind["timeout"]}, connection {r.FailuresByKind["connection"]}, refused {r.FailuresByKind["refused"]}{(r.FailuresByKind.GetValueOrDefault("generator") > 0 ? $", generator {r.FailuresByKind["generator"]}" : string.Empty)}"));
        o.WriteLine(string.Create(c, $"  rate          intended {r.IntendedRps:0.##}/s, achieved {r.AchievedRps:0.##}/s, throughput {r.ThroughputRps:0.##}/s"));
        Line(o, "latency", r.Latency);
        Line(o, "service time", r.ServiceTime);
        Line(o, "schedule lag", r.ScheduleLag);
        Line(o, "ttft", r.Ttft);
        if (r.PrefixCache is { } pc)
        {
            o.WriteLine(pc.HitRate is { } rate
                ? string.Create(c, $"  prefix cache  {rate * 100:0.#}% hit ({pc.Hits:0} of {pc.Queries:0} prompt tokens cached; {string.Join(", ", pc.MetricsUrls)})")
                : $"  prefix cache  no prompt tokens looked up ({string.Join(", ", pc.MetricsUrls)})");
            if (pc.Partial)
            {
                o.WriteLine($"  prefix cache  PARTIAL: not counted, unreadable: {string.Join("; ", pc.Failed)}");
            }
        }
        Line(o, "inter-token", r.Itl);
        if (r.OutputTokens > 0)
        {
            o.WriteLine(string.Create(c, $"  tokens        {r.OutputTokens} out ({r.OutputTokensPerSecond:0.#}/s)"));
        }

        if (r.UnparseableEvents > 0)
        {
            o.WriteLine(string.Create(c, $"  unparseable   {r.UnparseableEvents} stream event(s) neither JSON nor [DONE], counted as no token; first: {r.FirstUnparseable}"));
        }

        if (r.WebSocketMessagesSent + r.WebSocketMessagesReceived > 0)
        {
            o.WriteLine(string.Create(c, $"  websocket     {r.WebSocketMessagesSent} messages sent, {r.WebSocketMessagesReceived} received"));
        }

        o.WriteLine(string.Create(c, $"  goodput       {r.Good} good ({r.GoodFraction * 100:0.##}% of requests{(r.Slos.Count == 0 ? ", no --slo given: successes" : string.Empty)}): {r.GoodputScheduledRps:0.##}/s of the {r.ScheduledWindowSeconds:0.#} s scheduled window, {r.GoodputRps:0.##}/s of the {r.SendWindowSeconds:0.#} s send window"));
        foreach (var s in r.Slos)
        {
            o.WriteLine(string.Create(c, $"  slo           {s.Slo}: {s.Attainment * 100:0.##}% met (needs {s.Required * 100:0.##}%) {(s.Passed ? "ok" : "MISSED")}"));
        }

        foreach (var g in r.ByStatus)
        {
            o.WriteLine(string.Create(c, $"  status {g.Key,-14} {g.Count} (p50 {g.Latency.P50:0.##} ms, p99 {g.Latency.P99:0.##} ms)"));
        }

        if (r.CompareEnabled)
        {
            o.WriteLine(string.Create(c, $"  compared      {r.Compared}: {r.StatusMismatches} status mismatches, {r.BodyDifferences} body differences"));
        }

        if (r.SourceTimeRemovedSeconds > 0)
        {
            o.WriteLine(string.Create(c, $"  max-gap       {r.SourceTimeRemovedSeconds:0.###} s of idle source time removed"));
        }

        if (r.OutOfOrder is { } disorder)
        {
            o.WriteLine(string.Create(c, $"  out of order  {disorder.Records} source record(s) sorted by start (largest displacement {disorder.LargestDisplacement} position(s), {disorder.LargestMs:0.###} ms)"));
        }

        if (r.SkippedRecords > 0)
        {
            o.WriteLine(string.Create(c, $"  skipped       {r.SkippedRecords} record(s) of the source"));
        }

        if (r.Generator is { } gen)
        {
            o.WriteLine(string.Create(c, $"  generator     cpu {gen.CpuSeconds:0.##} s, GC {gen.Gen0}/{gen.Gen1}/{gen.Gen2} (gen0/1/2) pausing {gen.GcPauseMs:0.#} ms, peak memory {gen.PeakWorkingSetMb:0} MB"));
        }

        if (r.Conversations is { } conv)
        {
            o.WriteLine(string.Create(c, $"  conversations {conv.Conversations} of {conv.Turns} turns: {conv.Generated} user turns generated, {conv.CacheHits} from the cache, {conv.Failures} failed; digest {conv.Digest[..16]}"));
            if (conv.FirstFailure is { } why)
            {
                o.WriteLine(string.Create(c, $"  generator failed: {why}"));
            }
        }

        if (r.Workers is { } workers)
        {
            o.WriteLine(string.Create(c, $"  workers       {workers.Names.Count} reported ({string.Join(", ", workers.Names)}); {workers.Slices} slices, {workers.TakenOver} taken over from a dead worker, {workers.LostSessions} session(s) lost with one, {workers.MissingSlices} missing"));
        }

        if (r.Connections is { Waits: > 0 } conn)
        {
            o.WriteLine(string.Create(c, $"  connections   all {conn.Limit} in use at times: {conn.Waits} request(s) waited for one (counted as schedule lag; --connections, open-file limit {conn.OpenFileLimit})"));
        }

        foreach (var a in r.Assertions)
        {
            o.WriteLine(string.Create(c, $"  assert        {a.Expression}: {(a.Passed ? "passed" : "FAILED")} (actual {(a.Actual is { } v ? v.ToString("0.###", c) : a.Error)})"));
        }
    }

    private static void Line(TextWriter o, string name, Percentiles? p)
    {
        if (p is null || p.Count == 0)
        {
            return;
        }

        o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {name,-13} p50 {p.P50:0.###} ms  p90 {p.P90:0.###}  p95 {p.P95:0.###}  p99 {p.P99:0.###}  p99.9 {p.P999:0.###}  max {p.Max:0.###}"));
    }
}

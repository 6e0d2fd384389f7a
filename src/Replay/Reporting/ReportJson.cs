using System.Text.Json;

namespace Replay.Reporting;

/// <summary>
/// Writes <c>report.json</c> (snake_case, milliseconds for times). Top level: <c>requests</c>, <c>failures</c>,
/// <c>intended_rps</c>, <c>achieved_rps</c>, <c>latency_ms</c> {p50,p90,p95,p99,p999,max,mean},
/// <c>schedule_lag_ms</c>, <c>by_status</c> {code: {count, latency_ms}}, <c>ttft_ms</c> and <c>itl_ms</c> (null
/// without streams), goodput, and the per-second <c>series</c>. docs/replay.md lists every field.
/// </summary>
internal static class ReportJson
{
    /// <summary>The report as UTF-8 JSON.</summary>
    public static byte[] Serialize(RunReport r)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            Write(w, r);
        }

        return stream.ToArray();
    }

    private static void Write(Utf8JsonWriter w, RunReport r)
    {
        w.WriteStartObject();
        w.WriteString("tool", "replay");
        w.WriteNumber("report_version", 1);
        w.WriteString("command", r.Command);
        w.WriteString("mode", r.Mode);
        w.WriteString("source", r.Source);
        w.WriteString("target", r.Target);
        if (r.Profile is not null)
        {
            w.WriteString("profile", r.Profile);
        }
        else
        {
            w.WriteNull("profile");
        }

        w.WriteString("started_at", r.StartedAt);
        w.WriteNumber("duration_s", Round(r.DurationSeconds));
        w.WriteNumber("send_window_s", Round(r.SendWindowSeconds));
        w.WriteNumber("speed", r.Speed);
        w.WriteNumber("amplify", r.Amplify);
        if (r.Users is { } users)
        {
            w.WriteNumber("users", users);
        }

        w.WriteBoolean("cancelled", r.Cancelled);
        w.WriteNumber("requests", r.Requests);
        w.WriteNumber("planned", r.Planned);
        w.WriteNumber("peak_concurrent_sessions", r.PeakConcurrentSessions);
        w.WriteNumber("sent", r.Sent);
        w.WriteNumber("succeeded", r.Succeeded);
        w.WriteNumber("failures", r.Failures);
        w.WriteNumber("error_rate", Round(r.ErrorRate));
        w.WriteStartObject("failures_by_kind");
        foreach (var (k, v) in r.FailuresByKind)
        {
            w.WriteNumber(k, v);
        }

        w.WriteEndObject();
        w.WriteNumber("intended_rps", Round(r.IntendedRps));
        w.WriteNumber("achieved_rps", Round(r.AchievedRps));
        w.WriteNumber("throughput_rps", Round(r.ThroughputRps));
        Percentiles(w, "latency_ms", r.Latency);
        Percentiles(w, "success_latency_ms", r.SuccessLatency);
        Percentiles(w, "service_time_ms", r.ServiceTime);
        Percentiles(w, "schedule_lag_ms", r.ScheduleLag);
        Percentiles(w, "ttft_ms", r.Ttft);
        Percentiles(w, "itl_ms", r.Itl);
        Percentiles(w, "stream_tokens_per_s", r.StreamTokensPerSecond);
        w.WriteNumber("output_tokens", r.OutputTokens);
        w.WriteNumber("output_tokens_per_s", Round(r.OutputTokensPerSecond));
        w.WriteStartObject("websocket_messages");
        w.WriteNumber("sent", r.WebSocketMessagesSent);
        w.WriteNumber("received", r.WebSocketMessagesReceived);
        w.WriteEndObject();
        w.WriteStartObject("unparseable_events");
        w.WriteNumber("count", r.UnparseableEvents);
        w.WriteString("first", r.FirstUnparseable);
        w.WriteEndObject();

        Groups(w, "by_status", r.ByStatus);
        Groups(w, "by_route", r.ByRoute);
        Groups(w, "refused_by_limit", r.RefusedByLimit);

        w.WriteStartObject("goodput");
        w.WriteNumber("requests", r.Good);
        w.WriteNumber("rps", Round(r.GoodputRps));
        w.WriteNumber("fraction", Round(r.GoodFraction));
        w.WriteStartArray("slos");
        foreach (var s in r.Slos)
        {
            w.WriteStartObject();
            w.WriteString("slo", s.Slo);
            w.WriteNumber("met", s.Met);
            w.WriteNumber("attainment", Round(s.Attainment));
            w.WriteNumber("required", Round(s.Required));
            w.WriteBoolean("passed", s.Passed);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();

        if (r.CompareEnabled)
        {
            w.WriteStartObject("comparison");
            w.WriteNumber("compared", r.Compared);
            w.WriteNumber("status_mismatches", r.StatusMismatches);
            w.WriteNumber("body_differences", r.BodyDifferences);
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("comparison");
        }

        if (r.Generator is { } g)
        {
            w.WriteStartObject("generator");
            w.WriteNumber("gc_gen0", g.Gen0);
            w.WriteNumber("gc_gen1", g.Gen1);
            w.WriteNumber("gc_gen2", g.Gen2);
            w.WriteNumber("gc_pause_ms", Round(g.GcPauseMs));
            w.WriteNumber("cpu_s", Round(g.CpuSeconds));
            w.WriteNumber("peak_working_set_mb", Round(g.PeakWorkingSetMb));
            w.WriteNumber("cores", g.Cores);
            w.WriteEndObject();
        }

        if (r.Connections is { } conn)
        {
            w.WriteStartObject("connections");
            w.WriteNumber("limit", conn.Limit);
            w.WriteNumber("open_file_limit", conn.OpenFileLimit);
            w.WriteNumber("peak_in_use", conn.PeakInUse);
            w.WriteNumber("waits", conn.Waits);
            w.WriteEndObject();
        }

        if (r.Conversations is { } conv)
        {
            w.WriteStartObject("conversations");
            w.WriteNumber("conversations", conv.Conversations);
            w.WriteNumber("turns", conv.Turns);
            w.WriteNumber("generated", conv.Generated);
            w.WriteNumber("cache_hits", conv.CacheHits);
            w.WriteNumber("failures", conv.Failures);
            w.WriteString("first_failure", conv.FirstFailure);
            w.WriteString("digest", conv.Digest);
            w.WriteStartArray("sample");
            foreach (var turn in conv.Sample)
            {
                w.WriteStringValue(turn);
            }

            w.WriteEndArray();
            if (conv.CacheFile is not null)
            {
                w.WriteString("cache_file", conv.CacheFile);
            }

            w.WriteEndObject();
        }

        if (r.Workers is { } workers)
        {
            w.WriteStartObject("workers");
            w.WriteString("run", workers.RunId);
            w.WriteNumber("workers", workers.Workers);
            w.WriteStartArray("names");
            foreach (var name in workers.Names)
            {
                w.WriteStringValue(name);
            }

            w.WriteEndArray();
            w.WriteNumber("slices", workers.Slices);
            w.WriteNumber("taken_over", workers.TakenOver);
            w.WriteNumber("lost_sessions", workers.LostSessions);
            w.WriteNumber("missing_slices", workers.MissingSlices);
            w.WriteEndObject();
        }

        w.WriteNumber("source_time_removed_s", Round(r.SourceTimeRemovedSeconds));
        if (r.OutOfOrder is { } disorder)
        {
            w.WriteStartObject("out_of_order_records");
            w.WriteNumber("count", disorder.Records);
            w.WriteNumber("largest_displacement", disorder.LargestDisplacement);
            w.WriteNumber("largest_ms", Round(disorder.LargestMs));
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("out_of_order_records");
        }

        w.WriteNumber("skipped_records", r.SkippedRecords);
        w.WriteStartArray("skipped");
        foreach (var s in r.Skipped)
        {
            w.WriteStartObject();
            w.WriteString("position", s.Position);
            w.WriteString("reason", s.Reason);
            w.WriteEndObject();
        }

        w.WriteEndArray();

        w.WriteStartArray("assertions");
        foreach (var a in r.Assertions)
        {
            w.WriteStartObject();
            w.WriteString("assert", a.Expression);
            if (a.Actual is { } actual)
            {
                w.WriteNumber("actual", Round(actual));
            }
            else
            {
                w.WriteNull("actual");
            }

            w.WriteBoolean("passed", a.Passed);
            if (a.Error is not null)
            {
                w.WriteString("error", a.Error);
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();

        w.WriteStartArray("latency_distribution");
        foreach (var (p, ms) in r.Distribution)
        {
            w.WriteStartObject();
            w.WriteNumber("percentile", p);
            w.WriteNumber("ms", Round(ms));
            w.WriteEndObject();
        }

        w.WriteEndArray();

        w.WriteStartArray("series");
        foreach (var s in r.Series)
        {
            w.WriteStartObject();
            w.WriteNumber("t", s.T);
            w.WriteNumber("intended", s.Intended);
            w.WriteNumber("sent", s.Sent);
            w.WriteNumber("completed", s.Completed);
            w.WriteNumber("failures", s.Failures);
            w.WriteNumber("refused", s.Refused);
            w.WriteNumber("status_errors", s.StatusErrors);
            w.WriteNumber("timeouts", s.Timeouts);
            w.WriteNumber("connection_errors", s.ConnectionErrors);
            w.WriteStartObject("refused_by_limit");
            foreach (var (limit, count) in s.RefusedByLimit)
            {
                w.WriteNumber(limit, count);
            }

            w.WriteEndObject();
            w.WriteNumber("tokens", s.Tokens);
            w.WriteNumber("p50_ms", Round(s.P50));
            w.WriteNumber("p95_ms", Round(s.P95));
            w.WriteNumber("p99_ms", Round(s.P99));
            w.WriteNumber("max_ms", Round(s.Max));
            w.WriteNumber("lag_max_ms", Round(s.LagMax));
            w.WriteNumber("ttft_p50_ms", Round(s.TtftP50));
            w.WriteNumber("ttft_p95_ms", Round(s.TtftP95));
            w.WriteNumber("itl_p50_ms", Round(s.ItlP50));
            w.WriteNumber("itl_p95_ms", Round(s.ItlP95));
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void Percentiles(Utf8JsonWriter w, string name, Percentiles? p)
    {
        if (p is null)
        {
            w.WriteNull(name);
            return;
        }

        w.WriteStartObject(name);
        w.WriteNumber("count", p.Count);
        w.WriteNumber("p50", Round(p.P50));
        w.WriteNumber("p90", Round(p.P90));
        w.WriteNumber("p95", Round(p.P95));
        w.WriteNumber("p99", Round(p.P99));
        w.WriteNumber("p999", Round(p.P999));
        w.WriteNumber("max", Round(p.Max));
        w.WriteNumber("mean", Round(p.Mean));
        w.WriteEndObject();
    }

    private static void Groups(Utf8JsonWriter w, string name, IReadOnlyList<GroupReport> groups)
    {
        w.WriteStartObject(name);
        foreach (var g in groups)
        {
            w.WriteStartObject(g.Key);
            w.WriteNumber("count", g.Count);
            w.WriteNumber("failures", g.Failures);
            Percentiles(w, "latency_ms", g.Latency);
            w.WriteEndObject();
        }

        w.WriteEndObject();
    }

    private static double Round(double value) => double.IsFinite(value) ? Math.Round(value, 3) : 0;
}

using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Replay.Cli;

namespace Replay.Reporting;

/// <summary>
/// <c>replay compare A B</c>: two runs' <c>report.json</c> side by side, as a table on the console and as one
/// self-contained page (<c>--out</c>, default <c>compare.html</c>) with the key figures, latency p95, TTFT p95,
/// completed and refused requests over time for both runs, each run's status mix over time and in total, and the
/// refusals by limit. It is how the demo shows what the
/// gateway's protection changed: the same replay straight to a model server, and through the gateway.
/// </summary>
internal static class CompareCommand
{
    private sealed record Run(string Label, string Path, ReportDocument Report);

    /// <summary>Compares; returns the exit code (2 when a report cannot be read).</summary>
    public static async Task<int> ExecuteAsync(string a, string b, string labelA, string labelB, string output, TextWriter console, TextWriter error, CancellationToken cancellationToken)
    {
        var runs = new List<Run>();
        foreach (var (path, label) in new[] { (a, labelA), (b, labelB) })
        {
            var file = Directory.Exists(path) ? System.IO.Path.Combine(path, "report.json") : path;
            if (!File.Exists(file))
            {
                await error.WriteLineAsync($"replay compare: '{path}' has no report.json (give a run's --report directory or its report.json).").ConfigureAwait(false);
                return ExitCodes.UsageOrInput;
            }

            try
            {
                await using var stream = File.OpenRead(file);
                var doc = await ReportJson.ReadAsync(stream, cancellationToken).ConfigureAwait(false);
                if (doc is not { Requests: not null, SuccessLatencyMs: not null })
                {
                    await error.WriteLineAsync($"replay compare: '{file}' is not a replay report.json.").ConfigureAwait(false);
                    return ExitCodes.UsageOrInput;
                }

                runs.Add(new Run(label, file, doc));
            }
            catch (JsonException ex)
            {
                await error.WriteLineAsync($"replay compare: '{file}' is not valid JSON: {ex.Message}").ConfigureAwait(false);
                return ExitCodes.UsageOrInput;
            }
        }

        var rows = Rows(runs[0].Report, runs[1].Report);
        await console.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"{"",-30} {runs[0].Label,18} {runs[1].Label,18}")).ConfigureAwait(false);
        foreach (var (name, x, y) in rows)
        {
            await console.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"{name,-30} {x,18} {y,18}")).ConfigureAwait(false);
        }

        foreach (var line in Legend)
        {
            await console.WriteLineAsync("  " + line).ConfigureAwait(false);
        }

        // --out names the page, or a directory to write compare.html into.
        var outFile = System.IO.Path.GetFullPath(Directory.Exists(output) ? System.IO.Path.Combine(output, "compare.html") : output);
        try
        {
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(outFile)!);
            await File.WriteAllTextAsync(outFile, Render(runs, rows, outFile), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            await error.WriteLineAsync($"replay compare: cannot write '{outFile}': {ex.Message}").ConfigureAwait(false);
            return ExitCodes.UsageOrInput;
        }

        await console.WriteLineAsync($"comparison written: {outFile}").ConfigureAwait(false);
        return ExitCodes.Ok;
    }

    /// <summary>The compared figures, formatted.</summary>
    internal static List<(string Name, string A, string B)> Rows(ReportDocument a, ReportDocument b)
    {
        var rows = new List<(string, string, string)>();
        void Add(string name, Func<ReportDocument, string> value) => rows.Add((name, value(a), value(b)));

        Add("requests", static r => N(r.Requests ?? 0));
        Add("succeeded", static r => N(r.Succeeded));
        Add("failures", static r => N(r.Failures));
        Add("good requests", static r => r.Goodput is { } g ? N(g.Requests) : "–");
        Add("scheduled window (s)", static r => r.ScheduledWindowS > 0 ? F(r.ScheduledWindowS) : "–");
        Add("goodput (req/s, scheduled)", static r => r.Goodput is { ScheduledRps: { } s } ? F(s) : "–");
        Add("send window (s)", static r => F(r.SendWindowS));
        Add("goodput (req/s, send window)", static r => r.Goodput is { } g ? F(g.Rps) : "–");
        Add("achieved rate (req/s)", static r => F(r.AchievedRps));
        Add("throughput (req/s)", static r => F(r.ThroughputRps));
        Add("admitted p50 (ms)", static r => P(r.SuccessLatencyMs, static p => p.P50));
        Add("admitted p95 (ms)", static r => P(r.SuccessLatencyMs, static p => p.P95));
        Add("admitted p99 (ms)", static r => P(r.SuccessLatencyMs, static p => p.P99));
        Add("TTFT p50 (ms)", static r => P(r.TtftMs, static p => p.P50));
        Add("TTFT p95 (ms)", static r => P(r.TtftMs, static p => p.P95));
        Add("refused (any protocol)", static r => Refused(r).Count.ToString("N0", CultureInfo.InvariantCulture));
        Add("refusal latency p99 (ms)", static r => Refused(r) is { Count: > 0 } x ? F(x.P99) : "–");
        Add("refused most by", static r => Limits(r).OrderByDescending(static l => l.Value).FirstOrDefault() is { Key: not null } top
            ? string.Create(CultureInfo.InvariantCulture, $"{top.Key} {top.Value:N0}")
            : "–");
        Add("timeouts", static r => r.FailuresByKind.TryGetValue("timeout", out var t) ? t.ToString(CultureInfo.InvariantCulture) : "–");
        return rows;
    }

    /// <summary>What the rows of <see cref="Rows"/> mean, printed under the table and on the page.</summary>
    internal static readonly string[] Legend =
    [
        "good requests: succeeded and met every --slo (every success when none was given)",
        "scheduled window: how long the schedule lasts (the source's span over --speed, or the profile's duration), the same for both runs of one plan",
        "goodput (req/s, scheduled): good requests / the scheduled window; compare runs by this",
        "send window: from the first send to the last; it stretches when a slow target delays sessions' later requests",
        "goodput (req/s, send window): good requests / the send window; achieved rate: sent / the send window; throughput: completed / the whole run",
        "admitted: latency of the requests that succeeded, from their intended send time; TTFT: time to first token of streams",
        "refused: 429, 503, gRPC RESOURCE_EXHAUSTED/UNAVAILABLE or WebSocket 1008/1013, with the limit named by x-gateway-limit",
    ];

    /// <summary>
    /// Requests answered with a refusal in any protocol's terms: HTTP 429 or 503 (a gateway's or a model server's own),
    /// gRPC RESOURCE_EXHAUSTED or UNAVAILABLE, a WebSocket closed with 1008 or 1013; the count and the worst p99.
    /// </summary>
    private static (long Count, double P99) Refused(ReportDocument r)
    {
        long count = 0;
        double p99 = 0;
        foreach (var (key, group) in r.ByStatus)
        {
            if (Measurement.StatusKeys.IsRefusal(key))
            {
                count += group.Count;
                p99 = Math.Max(p99, group.LatencyMs?.P99 ?? 0);
            }
        }

        return (count, p99);
    }

    private static string N(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>A percentile of a distribution; "–" when it is missing or empty (no success, no stream).</summary>
    private static string P(PercentilesDocument? p, Func<PercentilesDocument, double> value) => p is { Count: > 0 } ? F(value(p)) : "–";

    private static string F(double value) => value.ToString(value >= 100 ? "N0" : "0.0#", CultureInfo.InvariantCulture);

    private static string Render(List<Run> runs, List<(string Name, string A, string B)> rows, string outFile)
    {
        string[] colors = ["#d62728", "#1f77b4"];
        var html = new StringBuilder(32 * 1024);
        html.Append("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Replay comparison</title><style>")
            .Append("body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:920px}h1{font-size:22px}h2{font-size:17px;margin-top:28px}")
            .Append("table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 10px;text-align:right;font-size:13px}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}")
            .Append("svg{background:#fff;border:1px solid #ddd}.muted{color:#666;font-size:13px}.bar{display:flex;height:14px;width:600px;border:1px solid #ddd}.bar span{display:block;height:100%}")
            .Append("</style></head><body>");
        html.Append("<h1>Replay comparison</h1><p class=\"muted\">");
        for (var i = 0; i < runs.Count; i++)
        {
            var r = runs[i];
            var link = System.IO.Path.GetRelativePath(System.IO.Path.GetDirectoryName(outFile)!, System.IO.Path.Combine(System.IO.Path.GetDirectoryName(r.Path)!, "report.html"));
            html.Append("<span style=\"color:").Append(colors[i]).Append("\">■</span> <b>").Append(E(r.Label)).Append("</b>: ")
                .Append(E(r.Report.Source)).Append(" → ").Append(E(r.Report.Target)).Append(" · <a href=\"").Append(E(link.Replace('\\', '/'))).Append("\">full report</a><br>");
        }

        html.Append("</p><h2>Side by side</h2><table><tr><th>figure</th>");
        foreach (var r in runs)
        {
            html.Append("<th>").Append(E(r.Label)).Append("</th>");
        }

        html.Append("</tr>");
        foreach (var (name, a, b) in rows)
        {
            html.Append("<tr><td>").Append(E(name)).Append("</td><td>").Append(E(a)).Append("</td><td>").Append(E(b)).Append("</td></tr>");
        }

        html.Append("</table><ul class=\"muted\">");
        foreach (var line in Legend)
        {
            html.Append("<li>").Append(E(line)).Append("</li>");
        }

        html.Append("</ul>");

        // Runs of very different scales (a 2.8 s p95 beside a 100 s one) share a log axis, so neither is a flat line.
        LineChart(html, "Latency p95 over time (ms)", "ms", [.. runs.Select((r, i) => new ReportHtml.Line(r.Label + " p95", colors[i], Series(r.Report, static s => s.P95Ms, skipZero: true)))]);
        LineChart(html, "Completed requests per second", "req/s", [.. runs.Select((r, i) => new ReportHtml.Line(r.Label, colors[i], Series(r.Report, static s => s.Completed)))]);
        LineChart(html, "Refused by a limit, per second", "req/s", [.. runs.Select((r, i) => new ReportHtml.Line(r.Label, colors[i], Series(r.Report, static s => s.Refused)))]);

        if (runs.Any(static r => r.Report.TtftMs is not null))
        {
            LineChart(html, "Time to first token p95 over time (ms)", "ms", [.. runs.Select((r, i) => new ReportHtml.Line(r.Label + " TTFT p95", colors[i], Series(r.Report, static s => s.TtftP95Ms, skipZero: true)))]);
        }

        // Both runs' status mix on the same axes, so their heights and lengths compare.
        html.Append("<h2>Status mix</h2>");
        var seconds = runs.Select(static r => Seconds(r.Report)).ToList();
        var xEnd = seconds.Max(static s => s.Count == 0 ? 1.0 : s[^1].T);
        var yTop = seconds.Max(static s => s.Count == 0 ? 0.0 : s.Max(static x => (double)x.Completed));
        for (var i = 0; i < runs.Count; i++)
        {
            html.Append("<p><b>").Append(E(runs[i].Label)).Append("</b></p>").Append(StatusBar(runs[i].Report))
                .Append(ReportHtml.StatusMix(seconds[i], xEnd, yTop));
        }

        html.Append("<h2>Refusals by limit</h2><table><tr><th>limit</th>");
        foreach (var r in runs)
        {
            html.Append("<th>").Append(E(r.Label)).Append("</th>");
        }

        html.Append("</tr>");
        var limits = runs.Select(static r => Limits(r.Report)).ToList();
        var names = limits.SelectMany(static l => l.Keys).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        foreach (var name in names)
        {
            html.Append("<tr><td>").Append(E(name)).Append("</td>");
            foreach (var l in limits)
            {
                html.Append("<td>").Append(l.TryGetValue(name, out var n) ? n.ToString("N0", CultureInfo.InvariantCulture) : "–").Append("</td>");
            }

            html.Append("</tr>");
        }

        if (names.Count == 0)
        {
            html.Append("<tr><td>none</td>").Append(string.Concat(runs.Select(static _ => "<td>0</td>"))).Append("</tr>");
        }

        html.Append("</table>");

        html.Append("<p class=\"muted\">Latency is measured from each request's intended send time (coordinated omission corrected). ")
            .Append("Refused requests were answered by a limit (429/503) without reaching the model server.</p></body></html>");
        return html.ToString();
    }

    /// <summary>A line whose median is this many times below the axis's top is drawn on a log axis.</summary>
    internal const double LogScaleRatio = 10;

    /// <summary>
    /// One chart of both runs' lines: on a linear axis when they are of a scale, on a log axis (said under the title)
    /// when some line's median is <see cref="LogScaleRatio"/> times below the largest value drawn: on a linear axis that
    /// line would be flat along the bottom (a 2.8 s p95 under a 100 s axis, issue 16). Medians, not peaks, decide, so
    /// a warm-up spike does not hide that two runs differ by orders of magnitude, nor make two alike runs log.
    /// </summary>
    private static void LineChart(StringBuilder html, string title, string unit, IReadOnlyList<ReportHtml.Line> lines)
    {
        var top = 0.0;
        string? flat = null;
        var flatRatio = 0.0;
        var medians = new List<(string Name, double Median)>(lines.Count);
        foreach (var line in lines)
        {
            var values = new List<double>(line.Points.Count);
            foreach (var (_, y) in line.Points)
            {
                top = Math.Max(top, y);
                if (y > 0)
                {
                    values.Add(y);
                }
            }

            if (values.Count > 0)
            {
                values.Sort();
                medians.Add((line.Name, values[values.Count / 2]));
            }
        }

        foreach (var (name, median) in medians)
        {
            if (top / median >= LogScaleRatio && top / median > flatRatio)
            {
                (flat, flatRatio) = (name, top / median);
            }
        }

        html.Append("<h2>").Append(E(title)).Append("</h2>");
        if (flat is not null)
        {
            html.Append(string.Create(CultureInfo.InvariantCulture, $"<p class=\"muted\">Log scale (the darker gridlines are powers of ten, each ten times the one below; the lighter ones between, when drawn, are 2 and 5 times the power of ten under them): the largest value drawn is {flatRatio:N0}x the median of {E(flat)}, which a linear axis would flatten.</p>"));
        }

        html.Append(ReportHtml.Chart(unit, "s", lines, logY: flat is not null));
    }

    /// <summary>A run's refusals by limit (<c>refused_by_limit</c>), empty for a report without them.</summary>
    private static Dictionary<string, long> Limits(ReportDocument r)
    {
        var limits = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (key, group) in r.RefusedByLimit)
        {
            limits[key] = group.Count;
        }

        return limits;
    }

    /// <summary>The status-mix counts of a run's <c>series</c>, for <see cref="ReportHtml.StatusMix"/>.</summary>
    private static List<SecondReport> Seconds(ReportDocument r)
    {
        var seconds = new List<SecondReport>(r.Series.Count);
        foreach (var s in r.Series)
        {
            seconds.Add(new SecondReport(s.T, 0, 0, s.Completed, s.Failures, s.Refused, 0, 0, 0, 0, 0, 0)
            {
                StatusErrors = s.StatusErrors,
                Timeouts = s.Timeouts,
                ConnectionErrors = s.ConnectionErrors,
            });
        }

        return seconds;
    }

    private static List<(double, double)> Series(ReportDocument r, Func<SecondDocument, double> field, bool skipZero = false)
    {
        var points = new List<(double, double)>(r.Series.Count);
        foreach (var s in r.Series)
        {
            var v = field(s);
            if (!(skipZero && v == 0))
            {
                points.Add((s.T, v));
            }
        }

        return points;
    }

    private static string StatusBar(ReportDocument r)
    {
        var counts = new List<(string Key, long Count)>();
        foreach (var (key, group) in r.ByStatus)
        {
            counts.Add((key, group.Count));
        }

        var total = Math.Max(1, counts.Sum(static c => c.Count));
        var bar = new StringBuilder("<div class=\"bar\">");
        var legend = new StringBuilder("<p class=\"muted\">");
        foreach (var (key, count) in counts.OrderBy(static c => c.Key, StringComparer.Ordinal))
        {
            var color = ColorOf(key);
            bar.Append(string.Create(CultureInfo.InvariantCulture, $"<span title=\"{E(key)}: {count}\" style=\"width:{count * 100.0 / total:0.##}%;background:{color}\"></span>"));
            legend.Append(string.Create(CultureInfo.InvariantCulture, $"<span style=\"color:{color}\">■</span> {E(key)} {count:N0} ({count * 100.0 / total:0.#}%) "));
        }

        return bar.Append("</div>").ToString() + legend.Append("</p>");
    }

    /// <summary>A status's colour, the same as its class in the status mix over time (<see cref="ReportHtml.StatusLayers"/>).</summary>
    private static string ColorOf(string key) => ReportHtml.StatusLayers[key switch
    {
        "grpc:OK" or "ws:ok" => 0,
        _ when Measurement.StatusKeys.IsRefusal(key) => 1,
        "timeout" => 3,
        "connection_error" => 4,
        _ when key.Length == 3 && key[0] is '1' or '2' or '3' => 0,
        _ => 2,
    }].Color;

    private static string E(string text) => WebUtility.HtmlEncode(text);
}

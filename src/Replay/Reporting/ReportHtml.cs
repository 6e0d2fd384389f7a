using System.Globalization;
using System.Net;
using System.Text;

namespace Replay.Reporting;

/// <summary>
/// Writes <c>report.html</c>: one self-contained page (inline CSS and SVG, no script, nothing fetched) with the
/// summary, latency percentiles over time, intended vs achieved rate over time, the status mix over time (stacked:
/// succeeded, refused, error status, timeout, connection error), TTFT and inter-token time over time for streams, the
/// refusals by limit (table, and per second), the latency distribution on HdrHistogram's "nines" axis
/// (x = −log₁₀(1 − p)), and the status, route, SLO and assertion tables.
/// </summary>
internal static class ReportHtml
{
    private const int Width = 860;
    private const int Height = 260;
    private const int Left = 60;
    private const int Right = 20;
    private const int Top = 30;
    private const int Bottom = 40;

    /// <summary>One line of a chart: its legend, colour and points.</summary>
    internal readonly record struct Line(string Name, string Color, IReadOnlyList<(double X, double Y)> Points);

    /// <summary>The page.</summary>
    public static string Render(RunReport r)
    {
        var html = new StringBuilder(64 * 1024);
        html.Append("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Replay report</title><style>")
            .Append("body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:920px}h1{font-size:22px}h2{font-size:17px;margin-top:28px}")
            .Append("table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}")
            .Append(".pass{color:#17803d;font-weight:600}.fail{color:#b3261e;font-weight:600}svg{background:#fff;border:1px solid #ddd}.muted{color:#666;font-size:13px}")
            .Append("</style></head><body>");
        html.Append("<h1>Replay report</h1><p class=\"muted\">").Append(E(r.Command)).Append(" · ").Append(E(r.Mode)).Append(" · ").Append(E(r.Source))
            .Append(" → ").Append(E(r.Target)).Append("<br>").Append(E(r.StartedAt.ToString("u", CultureInfo.InvariantCulture)));
        if (r.Profile is not null)
        {
            html.Append(" · ").Append(E(r.Profile));
        }

        html.Append(Fmt($" · speed {r.Speed} · amplify {r.Amplify}")).Append(r.Cancelled ? " · <b>cancelled</b>" : string.Empty).Append("</p>");

        html.Append("<h2>Summary</h2><table><tr><th>figure</th><th>value</th></tr>");
        Row(html, "requests (completed)", Fmt($"{r.Requests}"));
        Row(html, "failures", Fmt($"{r.Failures} ({r.ErrorRate * 100:0.##}%): status {r.FailuresByKind["status"]}, timeout {r.FailuresByKind["timeout"]}, connection {r.FailuresByKind["connection"]}, refused {r.FailuresByKind["refused"]}"));
        Row(html, "intended / achieved rate", Fmt($"{r.IntendedRps:0.##} / {r.AchievedRps:0.##} req/s"));
        Row(html, "throughput (whole run)", Fmt($"{r.ThroughputRps:0.##} req/s over {r.DurationSeconds:0.###} s"));
        Row(html, "goodput", Fmt($"{r.Good} good requests ({r.GoodFraction * 100:0.##}% of requests): {r.GoodputScheduledRps:0.##} req/s of the {r.ScheduledWindowSeconds:0.#} s scheduled window, {r.GoodputRps:0.##} req/s of the {r.SendWindowSeconds:0.#} s send window"));
        Row(html, "output tokens", Fmt($"{r.OutputTokens} ({r.OutputTokensPerSecond:0.#}/s)"));
        if (r.CompareEnabled)
        {
            Row(html, "compared with recording", Fmt($"{r.Compared}: {r.StatusMismatches} status mismatches, {r.BodyDifferences} body differences"));
        }

        Row(html, "skipped records", Fmt($"{r.SkippedRecords}"));
        if (r.Connections is { } conn)
        {
            Row(html, "sockets", Fmt($"at most {conn.Limit} (open-file limit {conn.OpenFileLimit}); {conn.PeakInUse} in use at the peak; {conn.Waits} request(s) waited for one"));
        }

        if (r.Workers is { } w)
        {
            Row(html, "workers", Fmt($"{w.Names.Count} reported ({string.Join(", ", w.Names)}); {w.Slices} slices, {w.TakenOver} taken over, {w.LostSessions} sessions lost, {w.MissingSlices} missing"));
        }

        if (r.Conversations is { } cv)
        {
            Row(html, "generated conversations", Fmt($"{cv.Conversations} of {cv.Turns} turns; {cv.Generated} user turns generated, {cv.CacheHits} from the cache, {cv.Failures} failed; digest {cv.Digest}"));
        }
        html.Append("</table>");

        html.Append("<h2>Latency (ms)</h2><table><tr><th>measure</th><th>count</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
        Percentile(html, "latency (from intended send)", r.Latency);
        Percentile(html, "latency of successes", r.SuccessLatency);
        Percentile(html, "service time (from actual send, uncorrected)", r.ServiceTime);
        Percentile(html, "schedule lag", r.ScheduleLag);
        Percentile(html, "time to first token", r.Ttft);
        Percentile(html, "inter-token time", r.Itl);
        html.Append("</table>");

        var series = r.Series;
        html.Append("<h2>Latency percentiles over time</h2>");
        html.Append(Chart("ms", "s",
        [
            new Line("p50", "#1f77b4", Points(series, static s => s.P50)),
            new Line("p95", "#ff7f0e", Points(series, static s => s.P95)),
            new Line("p99", "#d62728", Points(series, static s => s.P99)),
        ]));

        html.Append("<h2>Rate over time (requests/s)</h2>");
        html.Append(Chart("req/s", "s",
        [
            new Line("intended", "#888888", Points(series, static s => s.Intended)),
            new Line("achieved (sent)", "#2ca02c", Points(series, static s => s.Sent)),
            new Line("completed", "#1f77b4", Points(series, static s => s.Completed)),
        ]));

        html.Append("<h2>Status mix over time (requests/s, by completion)</h2>");
        html.Append(StatusMix(series));

        if (r.Ttft is not null || r.Itl is not null)
        {
            html.Append("<h2>Time to first token and inter-token time over time (streams)</h2>");
            html.Append(Chart("ms", "s",
            [
                new Line("TTFT p50", "#1f77b4", Streamed(series, static s => s.TtftP50)),
                new Line("TTFT p95", "#ff7f0e", Streamed(series, static s => s.TtftP95)),
                new Line("inter-token p50", "#2ca02c", Streamed(series, static s => s.ItlP50)),
                new Line("inter-token p95", "#9467bd", Streamed(series, static s => s.ItlP95)),
            ]));
        }

        html.Append("<h2>Refusals by limit</h2>");
        html.Append(RefusalsByLimit(r));

        html.Append("<h2>Latency distribution</h2>");
        var distribution = new List<(double, double)>();
        foreach (var (p, ms) in r.Distribution)
        {
            distribution.Add((Nines(p), ms));
        }

        html.Append(Chart("ms", "percentile", [new Line("latency", "#1f77b4", distribution)], nines: true));

        Groups(html, "By status", r.ByStatus);
        Groups(html, "By route", r.ByRoute);

        if (r.Slos.Count > 0)
        {
            html.Append("<h2>SLOs</h2><table><tr><th>SLO</th><th>met</th><th>attainment</th><th>required</th><th>result</th></tr>");
            foreach (var s in r.Slos)
            {
                html.Append("<tr><td>").Append(E(s.Slo)).Append("</td><td>").Append(s.Met).Append("</td><td>").Append(Fmt($"{s.Attainment * 100:0.##}%"))
                    .Append("</td><td>").Append(Fmt($"{s.Required * 100:0.##}%")).Append("</td><td class=\"").Append(s.Passed ? "pass\">met" : "fail\">missed").Append("</td></tr>");
            }

            html.Append("</table>");
        }

        if (r.Assertions.Count > 0)
        {
            html.Append("<h2>Assertions</h2><table><tr><th>assertion</th><th>actual</th><th>result</th></tr>");
            foreach (var a in r.Assertions)
            {
                html.Append("<tr><td>").Append(E(a.Expression)).Append("</td><td>").Append(a.Actual is { } v ? Fmt($"{v:0.###}") : E(a.Error ?? "n/a"))
                    .Append("</td><td class=\"").Append(a.Passed ? "pass\">passed" : "fail\">FAILED").Append("</td></tr>");
            }

            html.Append("</table>");
        }

        if (r.Skipped.Count > 0)
        {
            html.Append("<h2>Skipped records</h2><table><tr><th>where</th><th>why</th></tr>");
            foreach (var s in r.Skipped)
            {
                html.Append("<tr><td>").Append(E(s.Position)).Append("</td><td style=\"text-align:left\">").Append(E(s.Reason)).Append("</td></tr>");
            }

            html.Append("</table>");
        }

        html.Append("<p class=\"muted\">Latency is measured from each request's intended send time (coordinated omission corrected); schedule lag is how late it actually left.</p></body></html>");
        return html.ToString();
    }

    /// <summary>The colours of the status mix, bottom layer first (shared with the comparison page).</summary>
    internal static readonly (string Name, string Color, Func<SecondReport, double> Value)[] StatusLayers =
    [
        ("succeeded", "#2ca02c", static s => s.Completed - s.Failures),
        ("refused by a limit", "#ff7f0e", static s => s.Refused),
        ("error status", "#d62728", static s => s.StatusErrors),
        ("timeout", "#8c564b", static s => s.Timeouts),
        ("connection error", "#7f7f7f", static s => s.ConnectionErrors),
    ];

    /// <summary>A stacked area chart of the status mix per second (shared with the comparison page).</summary>
    /// <param name="series">The seconds.</param>
    /// <param name="maxX">Fix the x axis's end (seconds), so that two runs' charts compare; null: this run's length.</param>
    /// <param name="maxY">Fix the y axis's top (requests/s); null: this run's busiest second.</param>
    internal static string StatusMix(IReadOnlyList<SecondReport> series, double? maxX = null, double? maxY = null)
    {
        var lines = new List<Line>(StatusLayers.Length);
        var below = new double[series.Count];
        foreach (var (name, color, value) in StatusLayers)
        {
            var top = new List<(double, double)>(series.Count);
            for (var i = 0; i < series.Count; i++)
            {
                below[i] += value(series[i]);
                top.Add((series[i].T, below[i]));
            }

            lines.Add(new Line(name, color, top));
        }

        return Chart("req/s", "s", lines, stacked: true, fixedX: maxX, fixedY: maxY);
    }

    private static string RefusalsByLimit(RunReport r)
    {
        if (r.RefusedByLimit.Count == 0)
        {
            return "<p class=\"muted\">No request was refused by a limit.</p>";
        }

        var html = new StringBuilder();
        var refused = Math.Max(1, r.RefusedByLimit.Sum(static g => g.Count));
        html.Append("<table><tr><th>limit</th><th>refused</th><th>share of refusals</th><th>share of requests</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th></tr>");
        foreach (var g in r.RefusedByLimit)
        {
            html.Append("<tr><td>").Append(E(g.Key)).Append("</td>")
                .Append(Fmt($"<td>{g.Count}</td><td>{g.Count * 100.0 / refused:0.#}%</td><td>{g.Count * 100.0 / Math.Max(1, r.Requests):0.#}%</td><td>{g.Latency.P50:0.###}</td><td>{g.Latency.P99:0.###}</td><td>{g.Latency.Max:0.###}</td></tr>"));
        }

        html.Append("</table><p class=\"muted\">The limit is the one the gateway named in <code>x-gateway-limit</code> (a policy, or <code>admission:CLUSTER</code> for the backend's in-flight cap and queue), or in a WebSocket's close reason. Latency is how long the refusal took, from the intended send time.</p>");
        string[] palette = ["#ff7f0e", "#9467bd", "#e377c2", "#17becf", "#bcbd22", "#8c564b"];
        var lines = new List<Line>();
        foreach (var (g, i) in r.RefusedByLimit.Take(palette.Length).Select(static (g, i) => (g, i)))
        {
            lines.Add(new Line(g.Key, palette[i], Points(r.Series, s => s.RefusedByLimit.GetValueOrDefault(g.Key))));
        }

        html.Append(Chart("refused/s", "s", lines));
        return html.ToString();
    }

    /// <summary>Points of seconds in which a stream ended (a second without one has no TTFT, not a TTFT of 0).</summary>
    private static List<(double, double)> Streamed(IReadOnlyList<SecondReport> series, Func<SecondReport, double> value)
    {
        var points = new List<(double, double)>(series.Count);
        foreach (var s in series)
        {
            var v = value(s);
            if (v > 0)
            {
                points.Add((s.T, v));
            }
        }

        return points;
    }

    /// <summary>HdrHistogram's percentile axis: −log₁₀(1 − p/100), capped at five nines.</summary>
    private static double Nines(double percentile) => -Math.Log10(Math.Max(1e-5, 1 - (percentile / 100)));

    private static List<(double, double)> Points(IReadOnlyList<SecondReport> series, Func<SecondReport, double> value)
    {
        var points = new List<(double, double)>(series.Count);
        foreach (var s in series)
        {
            points.Add((s.T, value(s)));
        }

        return points;
    }

    /// <summary>An inline SVG line chart (shared by the report and the comparison page).</summary>
    /// <param name="yLabel">The y axis's unit.</param>
    /// <param name="xLabel">The x axis's unit.</param>
    /// <param name="lines">The lines; for a stacked chart, cumulative tops, bottom layer first.</param>
    /// <param name="nines">Label the x axis as percentiles on the nines scale.</param>
    /// <param name="stacked">Fill each line down to the one before it (a stacked area chart).</param>
    /// <param name="fixedX">The x axis's end, when fixed (null: the largest x).</param>
    /// <param name="fixedY">The y axis's top, when fixed (null: the largest y, rounded up).</param>
    /// <param name="logY">
    /// A logarithmic y axis (powers of ten around the data, labelled at each; values of 0 or less are left out, which
    /// breaks the line there): lines of very different scales stay readable together (a 2.8 s p95 beside a 100 s one).
    /// Not for stacked charts.
    /// </param>
    internal static string Chart(string yLabel, string xLabel, IReadOnlyList<Line> lines, bool nines = false, bool stacked = false, double? fixedX = null, double? fixedY = null, bool logY = false)
    {
        if (logY && !stacked)
        {
            return LogChart(yLabel, xLabel, lines, fixedX);
        }

        double maxX = 1, maxY = 0;
        foreach (var line in lines)
        {
            foreach (var (x, y) in line.Points)
            {
                maxX = Math.Max(maxX, x);
                maxY = Math.Max(maxY, y);
            }
        }

        maxX = fixedX is > 0 ? Math.Max(maxX, fixedX.Value) : maxX;
        maxY = NiceCeiling(fixedY is > 0 ? Math.Max(maxY, fixedY.Value) : maxY);
        var plotW = Width - Left - Right;
        var plotH = Height - Top - Bottom;
        var svg = new StringBuilder();
        svg.Append(Fmt($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-size=\"11\" data-plot-top=\"{Top}\" data-plot-bottom=\"{Top + plotH}\">"));
        for (var i = 0; i <= 4; i++)
        {
            var y = Top + (plotH * i / 4.0);
            var value = maxY * (4 - i) / 4;
            svg.Append(Fmt($"<line x1=\"{Left}\" y1=\"{y:0.#}\" x2=\"{Width - Right}\" y2=\"{y:0.#}\" stroke=\"#eee\"/><text x=\"{Left - 6}\" y=\"{y + 4:0.#}\" text-anchor=\"end\">{value:0.##}</text>"));
        }

        var ticks = nines ? new[] { 0.0, 1, 2, 3, 4, 5 } : XTicks(maxX);
        foreach (var t in ticks)
        {
            if (t > maxX + 1e-9)
            {
                continue;
            }

            var x = Left + (plotW * t / maxX);
            var label = nines ? NinesLabel(t) : Fmt($"{t:0.##}");
            svg.Append(Fmt($"<line x1=\"{x:0.#}\" y1=\"{Top}\" x2=\"{x:0.#}\" y2=\"{Top + plotH}\" stroke=\"#f2f2f2\"/><text x=\"{x:0.#}\" y=\"{Top + plotH + 14}\" text-anchor=\"middle\">{label}</text>"));
        }

        svg.Append(Fmt($"<text x=\"{Left + (plotW / 2)}\" y=\"{Height - 6}\" text-anchor=\"middle\">{E(xLabel)}</text><text x=\"12\" y=\"{Top - 10}\">{E(yLabel)}</text>"));
        var legendX = Left + 10;
        IReadOnlyList<(double X, double Y)>? previous = null;
        foreach (var line in lines)
        {
            if (stacked && line.Points.Count > 0)
            {
                // The band between this line and the one below it (the x axis for the first).
                svg.Append("<polygon stroke=\"none\" fill-opacity=\"0.85\" fill=\"").Append(line.Color).Append("\" points=\"");
                foreach (var (x, y) in line.Points)
                {
                    svg.Append(Fmt($"{Left + (plotW * x / maxX):0.#},{Top + plotH - (maxY <= 0 ? 0 : plotH * y / maxY):0.#} "));
                }

                for (var i = line.Points.Count - 1; i >= 0; i--)
                {
                    var x = line.Points[i].X;
                    var y = previous is null ? 0 : previous[i].Y;
                    svg.Append(Fmt($"{Left + (plotW * x / maxX):0.#},{Top + plotH - (maxY <= 0 ? 0 : plotH * y / maxY):0.#} "));
                }

                svg.Append("\"/>");
                previous = line.Points;
            }
            else if (line.Points.Count > 0)
            {
                svg.Append("<polyline fill=\"none\" stroke-width=\"1.6\" data-series=\"").Append(E(line.Name)).Append("\" stroke=\"").Append(line.Color).Append("\" points=\"");
                foreach (var (x, y) in line.Points)
                {
                    var px = Left + (plotW * x / maxX);
                    var py = Top + plotH - (maxY <= 0 ? 0 : plotH * y / maxY);
                    svg.Append(Fmt($"{px:0.#},{py:0.#} "));
                }

                svg.Append("\"/>");
            }

            svg.Append(Fmt($"<rect x=\"{legendX}\" y=\"{Top - 22}\" width=\"10\" height=\"10\" fill=\"{line.Color}\"/><text x=\"{legendX + 14}\" y=\"{Top - 13}\">{E(line.Name)}</text>"));
            legendX += 30 + (line.Name.Length * 7);
        }

        svg.Append("</svg>");
        return svg.ToString();
    }

    /// <summary>
    /// <see cref="Chart"/> on a log₁₀ y axis: from the power of ten at or below the smallest positive value to the one at
    /// or above the largest, gridlines and labels at each power (and at 2 and 5 times it when the axis spans three
    /// decades or fewer). A point of 0 or less cannot be drawn on it and breaks its line.
    /// </summary>
    private static string LogChart(string yLabel, string xLabel, IReadOnlyList<Line> lines, double? fixedX)
    {
        double maxX = 1, minY = double.MaxValue, maxY = 0;
        foreach (var line in lines)
        {
            foreach (var (x, y) in line.Points)
            {
                maxX = Math.Max(maxX, x);
                if (y > 0)
                {
                    minY = Math.Min(minY, y);
                    maxY = Math.Max(maxY, y);
                }
            }
        }

        maxX = fixedX is > 0 ? Math.Max(maxX, fixedX.Value) : maxX;
        if (maxY <= 0)
        {
            (minY, maxY) = (1, 10);
        }

        var lo = Math.Floor(Math.Log10(minY));
        var hi = Math.Max(lo + 1, Math.Ceiling(Math.Log10(maxY)));
        var plotW = Width - Left - Right;
        var plotH = Height - Top - Bottom;
        double Py(double v) => Top + plotH - (plotH * (Math.Log10(v) - lo) / (hi - lo));
        var svg = new StringBuilder();
        svg.Append(Fmt($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-size=\"11\" data-plot-top=\"{Top}\" data-plot-bottom=\"{Top + plotH}\" data-scale=\"log\">"));
        double[] multiples = hi - lo <= 3 ? [1, 2, 5] : [1];
        for (var d = lo; d <= hi; d++)
        {
            foreach (var m in multiples)
            {
                var value = m * Math.Pow(10, d);
                if (d == hi && m > 1)
                {
                    break;
                }

                var y = Py(value);
                svg.Append(Fmt($"<line x1=\"{Left}\" y1=\"{y:0.#}\" x2=\"{Width - Right}\" y2=\"{y:0.#}\" stroke=\"{(m == 1 ? "#e4e4e4" : "#f4f4f4")}\"/><text x=\"{Left - 6}\" y=\"{y + 4:0.#}\" text-anchor=\"end\">{AxisValue(value)}</text>"));
            }
        }

        foreach (var t in XTicks(maxX))
        {
            if (t > maxX + 1e-9)
            {
                continue;
            }

            var x = Left + (plotW * t / maxX);
            svg.Append(Fmt($"<line x1=\"{x:0.#}\" y1=\"{Top}\" x2=\"{x:0.#}\" y2=\"{Top + plotH}\" stroke=\"#f2f2f2\"/><text x=\"{x:0.#}\" y=\"{Top + plotH + 14}\" text-anchor=\"middle\">{t:0.##}</text>"));
        }

        svg.Append(Fmt($"<text x=\"{Left + (plotW / 2)}\" y=\"{Height - 6}\" text-anchor=\"middle\">{E(xLabel)}</text><text x=\"12\" y=\"{Top - 10}\">{E(yLabel)} (log scale)</text>"));
        var legendX = Left + 130;
        foreach (var line in lines)
        {
            var open = false;
            foreach (var (x, y) in line.Points)
            {
                if (y <= 0)
                {
                    if (open)
                    {
                        svg.Append("\"/>");
                        open = false;
                    }

                    continue;
                }

                if (!open)
                {
                    svg.Append("<polyline fill=\"none\" stroke-width=\"1.6\" data-series=\"").Append(E(line.Name)).Append("\" stroke=\"").Append(line.Color).Append("\" points=\"");
                    open = true;
                }

                svg.Append(Fmt($"{Left + (plotW * x / maxX):0.#},{Py(y):0.#} "));
            }

            if (open)
            {
                svg.Append("\"/>");
            }

            svg.Append(Fmt($"<rect x=\"{legendX}\" y=\"{Top - 22}\" width=\"10\" height=\"10\" fill=\"{line.Color}\"/><text x=\"{legendX + 14}\" y=\"{Top - 13}\">{E(line.Name)}</text>"));
            legendX += 30 + (line.Name.Length * 7);
        }

        svg.Append("</svg>");
        return svg.ToString();
    }

    /// <summary>An axis value without trailing noise: 0.01, 0.5, 20, 1,000, 100,000.</summary>
    private static string AxisValue(double value) => value >= 1000 ? Fmt($"{value:N0}") : Fmt($"{value:0.###}");

    private static string NinesLabel(double nines) => nines switch
    {
        0 => "0%",
        1 => "90%",
        2 => "99%",
        3 => "99.9%",
        4 => "99.99%",
        _ => "99.999%",
    };

    private static double[] XTicks(double maxX)
    {
        var step = NiceCeiling(maxX / 8);
        var ticks = new List<double>();
        for (var t = 0.0; t <= maxX + 1e-9; t += step)
        {
            ticks.Add(t);
        }

        return [.. ticks];
    }

    private static double NiceCeiling(double value)
    {
        if (value <= 0)
        {
            return 1;
        }

        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(value)));
        foreach (var m in new[] { 1.0, 2, 2.5, 5, 10 })
        {
            if (m * magnitude >= value)
            {
                return m * magnitude;
            }
        }

        return 10 * magnitude;
    }

    private static void Groups(StringBuilder html, string title, IReadOnlyList<GroupReport> groups)
    {
        html.Append("<h2>").Append(title).Append("</h2><table><tr><th>key</th><th>count</th><th>failures</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
        foreach (var g in groups)
        {
            html.Append("<tr><td>").Append(E(g.Key)).Append("</td><td>").Append(g.Count).Append("</td><td>").Append(g.Failures).Append("</td>");
            Cells(html, g.Latency);
            html.Append("</tr>");
        }

        html.Append("</table>");
    }

    private static void Percentile(StringBuilder html, string name, Percentiles? p)
    {
        if (p is null || p.Count == 0)
        {
            return;
        }

        html.Append("<tr><td>").Append(E(name)).Append("</td><td>").Append(p.Count).Append("</td>");
        Cells(html, p);
        html.Append("</tr>");
    }

    private static void Cells(StringBuilder html, Percentiles p) =>
        html.Append(Fmt($"<td>{p.P50:0.###}</td><td>{p.P90:0.###}</td><td>{p.P95:0.###}</td><td>{p.P99:0.###}</td><td>{p.P999:0.###}</td><td>{p.Max:0.###}</td>"));

    private static void Row(StringBuilder html, string name, string value) =>
        html.Append("<tr><td>").Append(E(name)).Append("</td><td>").Append(E(value)).Append("</td></tr>");

    private static string E(string text) => WebUtility.HtmlEncode(text);

    private static string Fmt(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

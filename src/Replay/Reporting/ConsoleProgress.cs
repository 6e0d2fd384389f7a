using System.Globalization;
using Replay.Measurement;
using Spectre.Console;

namespace Replay.Reporting;

/// <summary>
/// The live console while a run goes: a Spectre.Console live table on a terminal, or one plain line per second when
/// output is redirected (CI logs, tests), or nothing (<c>--progress none</c>).
/// </summary>
internal static class ConsoleProgress
{
    /// <summary>Shows progress until <paramref name="run"/> completes.</summary>
    /// <param name="mode"><c>live</c>, <c>plain</c> or <c>none</c>.</param>
    /// <param name="output">Where to write.</param>
    /// <param name="snapshot">Reads the current figures.</param>
    /// <param name="planned">Requests planned, when known (for the progress fraction).</param>
    /// <param name="inflight">Sessions in flight now (sessions started and not ended), or null when this process cannot know (a coordinator).</param>
    /// <param name="run">The run.</param>
    /// <param name="time">The clock.</param>
    public static async Task ShowAsync(string mode, TextWriter output, Func<RunMetrics.Progress> snapshot, long? planned, Func<int>? inflight, Task run, TimeProvider time)
    {
        switch (mode)
        {
            case "none":
                await Wait(run).ConfigureAwait(false);
                return;
            case "live":
                await LiveAsync(output, snapshot, planned, inflight, run, time).ConfigureAwait(false);
                return;
            default:
                await PlainAsync(output, snapshot, planned, inflight, run, time).ConfigureAwait(false);
                return;
        }
    }

    /// <summary>One line of progress.</summary>
    /// <remarks>
    /// "in flight" names what it counts: requests sent and not yet complete (sent − done), and sessions started and not
    /// ended (a session of several requests, with think times between them, holds a place while it waits).
    /// </remarks>
    internal static string Line(RunMetrics.Progress p, long? planned, int? inflight) => string.Create(CultureInfo.InvariantCulture,
        $"[{p.Elapsed,7:0.0}s] sent {p.Sent}{(planned is { } n ? $"/{n}" : string.Empty)}  done {p.Completed}  rate {p.RateLastSecond}/s  p95 {p.P95LastSecondMs:0.0}ms  lag p99 {p.LagP99Ms:0.00}ms  errors {p.Failures}  in flight {Math.Max(0, p.Sent - p.Completed)} req{(inflight is { } sessions ? $" / {sessions} sessions" : string.Empty)}");

    private static async Task PlainAsync(TextWriter output, Func<RunMetrics.Progress> snapshot, long? planned, Func<int>? inflight, Task run, TimeProvider time)
    {
        while (true)
        {
            var finished = await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(1), time)).ConfigureAwait(false) == run;
            if (finished)
            {
                return;
            }

            await output.WriteLineAsync(Line(snapshot(), planned, inflight?.Invoke())).ConfigureAwait(false);
            await output.FlushAsync().ConfigureAwait(false);
        }
    }

    private static async Task LiveAsync(TextWriter output, Func<RunMetrics.Progress> snapshot, long? planned, Func<int>? inflight, Task run, TimeProvider time)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output), Interactive = InteractionSupport.Yes });
        var table = new Table().Border(TableBorder.Rounded).AddColumn("elapsed").AddColumn("sent").AddColumn("done").AddColumn("rate/s")
            .AddColumn("p95 (last s)").AddColumn("lag p99").AddColumn("errors").AddColumn("in flight (req / sessions)");
        table.AddRow(string.Empty, string.Empty, string.Empty, string.Empty, string.Empty, string.Empty, string.Empty, string.Empty);
        await console.Live(table).AutoClear(false).StartAsync(async ctx =>
        {
            while (true)
            {
                var p = snapshot();
                var c = CultureInfo.InvariantCulture;
                table.UpdateCell(0, 0, p.Elapsed.ToString("0.0s", c));
                table.UpdateCell(0, 1, planned is { } n ? $"{p.Sent}/{n}" : p.Sent.ToString(c));
                table.UpdateCell(0, 2, p.Completed.ToString(c));
                table.UpdateCell(0, 3, p.RateLastSecond.ToString(c));
                table.UpdateCell(0, 4, p.P95LastSecondMs.ToString("0.0 'ms'", c));
                table.UpdateCell(0, 5, p.LagP99Ms.ToString("0.00 'ms'", c));
                table.UpdateCell(0, 6, p.Failures == 0 ? "0" : $"[red]{p.Failures}[/]");
                table.UpdateCell(0, 7, string.Create(c, $"{Math.Max(0, p.Sent - p.Completed)}{(inflight is null ? string.Empty : $" / {inflight()}")}"));
                ctx.Refresh();
                if (await Task.WhenAny(run, Task.Delay(TimeSpan.FromMilliseconds(250), time)).ConfigureAwait(false) == run)
                {
                    return;
                }
            }
        }).ConfigureAwait(false);
    }

    private static async Task Wait(Task run)
    {
        try
        {
            await run.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The caller sees it.
        }
    }
}

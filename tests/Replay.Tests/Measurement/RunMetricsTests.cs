using Microsoft.Extensions.Time.Testing;
using Replay.Measurement;
using Replay.Reporting;
using Replay.Scheduling;
using Replay.Sources;

namespace Replay.Tests.Measurement;

/// <summary>The measurement arithmetic on a fake clock: latency from the intended time, lag, series, goodput.</summary>
public sealed class RunMetricsTests
{
    [Fact]
    public void Latency_is_measured_from_the_intended_time_and_lag_from_the_actual_send()
    {
        var time = new FakeTimeProvider();
        var m = new RunMetrics(time, []);
        m.Start(time.GetTimestamp());

        // 100 requests intended every 10 ms; each served in 2 ms, except that the sender was stuck from 500 to
        // 800 ms: the requests intended meanwhile left at 800 ms.
        for (var i = 0; i < 100; i++)
        {
            var intended = m.StartTimestamp + Ticks(time, i * 10);
            var sent = i * 10 is >= 500 and < 800 ? m.StartTimestamp + Ticks(time, 800) : intended;
            m.RecordStart(intended, sent);
            var outcome = new Outcome { StatusKey = "200", HttpStatus = 200, EndTimestamp = sent + Ticks(time, 2) };
            m.RecordCompleted(outcome, intended, sent, "r", []);
        }

        Assert.Equal(100, m.Completed);
        Assert.Equal(2, Histograms.Ms(m.ServiceTime, 99), 1); // uncorrected: every request took 2 ms
        Assert.Equal(302, Histograms.MaxMs(m.Latency), 0);    // intended at 500 ms, answered at 802 ms
        Assert.Equal(300, Histograms.MaxMs(m.ScheduleLag), 0);
        Assert.True(Histograms.Ms(m.Latency, 90) > 100, "30 of 100 requests waited for the stuck sender");
    }

    [Fact]
    public void The_series_counts_by_second_and_goodput_counts_requests_meeting_every_slo()
    {
        var time = new FakeTimeProvider();
        var slo1 = Slo.TryParse("e2e<50ms", out _)!;
        var slo2 = Slo.TryParse("ttft_p50<10ms", out _)!;
        var m = new RunMetrics(time, [slo1, slo2]);
        m.Start(time.GetTimestamp());
        for (var i = 0; i < 30; i++)
        {
            var intended = m.StartTimestamp + Ticks(time, i * 100); // 10 per second for 3 s
            m.RecordStart(intended, intended);
            var end = intended + Ticks(time, i % 2 == 0 ? 20 : 60);
            var outcome = new Outcome
            {
                StatusKey = i % 10 == 9 ? "503" : "200",
                Failure = i % 10 == 9 ? FailureKind.Refused : FailureKind.None,
                Streamed = true,
                Tokens = 3,
                FirstTokenTimestamp = intended + Ticks(time, 5),
                LastTokenTimestamp = end,
                EndTimestamp = end,
            };
            m.RecordCompleted(outcome, intended, intended, "r", [intended + Ticks(time, 5), intended + Ticks(time, 10), end]);
        }

        var series = m.FinishSeries();
        Assert.Equal([10, 10, 10], series.Take(3).Select(static s => s.Intended));
        Assert.Equal([10, 10, 10], series.Take(3).Select(static s => s.Sent));
        Assert.Equal(3, m.FailuresOf(FailureKind.Refused));
        Assert.Equal(15, m.Good);       // the even ones (20 ms) succeeded and met both SLOs
        Assert.Equal(15, m.SloMet(0));  // e2e < 50 ms: the 15 fast ones
        Assert.Equal(27, m.SloMet(1));  // ttft 5 ms for every success
        Assert.Equal(30 * 3, m.OutputTokens);
        Assert.Equal(27 * 2, m.InterToken.TotalCount);
    }

    [Fact]
    public void Rates_in_the_report_come_from_the_intended_and_actual_send_windows()
    {
        var time = new FakeTimeProvider();
        var m = new RunMetrics(time, []);
        m.Start(time.GetTimestamp());
        for (var i = 0; i < 100; i++)
        {
            var intended = m.StartTimestamp + Ticks(time, i * 10);   // 100/s over 1 s
            var sent = m.StartTimestamp + Ticks(time, i * 20);       // but the sender only managed 50/s
            m.RecordStart(intended, sent);
            m.RecordCompleted(new Outcome { StatusKey = "200", EndTimestamp = sent + Ticks(time, 1) }, intended, sent, "r", []);
        }

        var plan = new RunPlan { Mode = RunMode.Open, Sessions = [], NominalSeconds = 1 };
        var workload = new Workload("test", [], [], 0);
        var report = ReportBuilder.Build(m, new ReportBuilder.Context("load", plan, workload, "t", DateTimeOffset.UnixEpoch, 1, 1, false, false), m.StartTimestamp + Ticks(time, 2000));

        Assert.Equal(100, report.IntendedRps, 6);
        Assert.InRange(report.AchievedRps, 49, 51);
        Assert.Equal(100, report.Requests);
    }

    [Fact]
    public void Refusals_are_counted_by_limit_per_second_and_merge_exactly_across_workers()
    {
        var time = new FakeTimeProvider();
        var start = time.GetTimestamp();
        var parts = new[] { new RunMetrics(time, [], keepSeconds: true), new RunMetrics(time, [], keepSeconds: true) };
        foreach (var p in parts)
        {
            p.Start(start);
        }

        // Over 3 s, each worker: every 100 ms a stream of 3 tokens 10 ms apart (TTFT 50 ms), a refusal by "per-key"
        // every 200 ms, one by an unnamed limit, and a timeout in the last second.
        for (var w = 0; w < parts.Length; w++)
        {
            var m = parts[w];
            for (var i = 0; i < 30; i++)
            {
                var intended = start + Ticks(time, i * 100);
                m.RecordStart(intended, intended);
                var first = intended + Ticks(time, 50);
                long[] tokens = [first, first + Ticks(time, 10), first + Ticks(time, 20)];
                m.RecordCompleted(new Outcome { StatusKey = "200", Streamed = true, Tokens = 3, FirstTokenTimestamp = first, LastTokenTimestamp = tokens[^1], EndTimestamp = tokens[^1] }, intended, intended, "r", tokens);
                if (i % 2 == 0)
                {
                    m.RecordStart(intended, intended);
                    m.RecordCompleted(new Outcome { StatusKey = "429", Failure = FailureKind.Refused, Limit = "per-key", EndTimestamp = intended + Ticks(time, 1) }, intended, intended, "r", []);
                }
            }

            var late = start + Ticks(time, 2500);
            m.RecordStart(late, late);
            m.RecordCompleted(new Outcome { StatusKey = "503", Failure = FailureKind.Refused, EndTimestamp = late + Ticks(time, 2) }, late, late, "r", []);
            m.RecordStart(late, late);
            m.RecordCompleted(new Outcome { StatusKey = "timeout", Failure = FailureKind.Timeout, EndTimestamp = late + Ticks(time, 300) }, late, late, "r", []);
        }

        var merged = new RunMetrics(time, []);
        merged.Start(start);
        foreach (var p in parts)
        {
            merged.Merge(p.Export());
        }

        var byLimit = merged.RefusedByLimit().ToDictionary(static p => p.Key, static p => p.Value.Count);
        Assert.Equal(30, byLimit["per-key"]);
        Assert.Equal(2, byLimit[RunMetrics.UnnamedLimit]);
        var series = merged.FinishSeries();
        Assert.Equal([10, 10, 10], series.Take(3).Select(static b => b.RefusedByLimit!["per-key"]));
        Assert.Equal(2, series[2].RefusedByLimit![RunMetrics.UnnamedLimit]);
        Assert.Equal(2, series[2].Timeouts);
        Assert.All(series.Take(3), b => Assert.Equal(b.Completed, (b.Completed - b.Failures) + b.Refused + b.StatusErrors + b.Timeouts + b.ConnectionErrors));
        Assert.All(series.Take(3), b => Assert.Equal(50, b.TtftP95, 0)); // per-second TTFT survives the merge
        Assert.All(series.Take(3), b => Assert.Equal(10, b.ItlP50, 0));
    }

    [Fact]
    public void Per_second_histograms_close_as_the_run_goes_and_a_late_value_joins_the_oldest_open_second()
    {
        var closed = new List<(int Second, long Count, double P50)>();
        var seconds = new SecondHistograms(keep: false, (i, h) => closed.Add((i, h.TotalCount, Histograms.Ms(h, 50))));

        seconds.Record(0, 1000);
        seconds.Record(1, 2000);
        seconds.Record(2, 3000);   // closes second 0
        seconds.Record(0, 9000);   // late: second 0 is closed, so it counts in second 1
        seconds.Record(10, 4000);  // closes 1 and 2
        seconds.CloseAll();

        Assert.Equal([0, 1, 2, 10], closed.Select(static c => c.Second));
        Assert.Equal([1L, 2L, 1L, 1L], closed.Select(static c => c.Count));
        Assert.Equal(1, closed[0].P50, 1);
        Assert.True(seconds.Held.Count == 0, "a streaming series holds nothing after CloseAll");
    }

    private static long Ticks(FakeTimeProvider time, double ms) => (long)(ms * time.TimestampFrequency / 1000);
}

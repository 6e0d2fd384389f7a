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

    private static long Ticks(FakeTimeProvider time, double ms) => (long)(ms * time.TimestampFrequency / 1000);
}

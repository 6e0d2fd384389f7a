using System.Text.Json;

namespace Replay.Tests.EndToEnd;

/// <summary>report.json and report.html hold the run's data; assertions set the exit code.</summary>
[Collection(RealTimeGroup.Name)]
public sealed class ReportAndAssertionTests
{
    [Fact(Timeout = 60_000)]
    public async Task Report_json_and_html_are_written_and_hold_the_data()
    {
        await using var sim = await TestHost.StartSimAsync(perTokenMs: 1);
        using var dir = TestHost.CreateTempDirectory();

        var result = await TestHost.RunAsync([
            "load", "--rate", "100", "--duration", "2s", "--stream", "--max-tokens", "8", "--slo", "ttft_p95<5s", "--slo", "e2e<1ms",
            "--report", dir.Path, .. TestHost.Targets(sim)]);

        Assert.True(result.ExitCode == 0, result.ToString());
        using var report = TestHost.ReadReport(dir.Path);
        var r = report.RootElement;
        Assert.Equal(200, r.GetProperty("requests").GetInt64());
        Assert.Equal(0, r.GetProperty("failures").GetInt64());
        Assert.InRange(r.GetProperty("intended_rps").GetDouble(), 99, 101);
        Assert.InRange(r.GetProperty("achieved_rps").GetDouble(), 90, 101);
        foreach (var p in new[] { "p50", "p90", "p95", "p99", "p999", "max" })
        {
            Assert.True(r.GetProperty("latency_ms").GetProperty(p).GetDouble() > 0, p);
        }

        foreach (var p in new[] { "p50", "p99", "max" })
        {
            Assert.True(r.GetProperty("schedule_lag_ms").TryGetProperty(p, out _), p);
        }

        var ok = r.GetProperty("by_status").GetProperty("200");
        Assert.Equal(200, ok.GetProperty("count").GetInt64());
        Assert.True(ok.GetProperty("latency_ms").GetProperty("p99").GetDouble() > 0);
        Assert.Equal(200, r.GetProperty("ttft_ms").GetProperty("count").GetInt64());
        Assert.True(r.GetProperty("itl_ms").GetProperty("count").GetInt64() >= 200 * 6); // 8 tokens, 7 gaps each (a few coalesce)
        Assert.Equal(1600, r.GetProperty("output_tokens").GetInt64());
        var slos = r.GetProperty("goodput").GetProperty("slos").EnumerateArray().ToList();
        Assert.True(slos[0].GetProperty("passed").GetBoolean());
        Assert.False(slos[1].GetProperty("passed").GetBoolean()); // nothing completes within 1 ms at 1 ms per token
        Assert.Equal(0, r.GetProperty("goodput").GetProperty("requests").GetInt64());
        var series = r.GetProperty("series").EnumerateArray().ToList();
        Assert.True(series.Count >= 2);
        Assert.Equal(200, series.Sum(static s => s.GetProperty("sent").GetInt64()));

        var html = await File.ReadAllTextAsync(Path.Combine(dir.Path, "report.html"));
        Assert.Contains("<svg", html, StringComparison.Ordinal);
        Assert.Contains("Latency percentiles over time", html, StringComparison.Ordinal);
        Assert.Contains("Rate over time", html, StringComparison.Ordinal);
        Assert.Contains("Latency distribution", html, StringComparison.Ordinal);
        Assert.Contains("<polyline", html, StringComparison.Ordinal);
        Assert.Contains("ttft_p95&lt;5s", html, StringComparison.Ordinal);
        Assert.DoesNotContain("<script src", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("<link", html, StringComparison.OrdinalIgnoreCase);
    }

    [Fact(Timeout = 60_000)]
    public async Task A_warmup_is_sent_but_not_measured()
    {
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();

        var result = await TestHost.RunAsync(["load", "--rate", "100", "--duration", "1s", "--warmup", "1s", "--max-tokens", "2", "--report", dir.Path, .. TestHost.Targets(sim)]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(200, sim.Stats.Completed);
        using var report = TestHost.ReadReport(dir.Path);
        Assert.Equal(100, report.RootElement.GetProperty("requests").GetInt64());
        Assert.InRange(report.RootElement.GetProperty("duration_s").GetDouble(), 0.9, 1.8);
    }

    [Fact(Timeout = 60_000)]
    public async Task Assertions_set_the_exit_code()
    {
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();
        string[] load = ["load", "--rate", "100", "--duration", "1s", "--max-tokens", "2", .. TestHost.Targets(sim)];

        var passing = await TestHost.RunAsync([.. load, "--assert", "p95<10s", "--assert", "error_rate<1%", "--assert", "achieved_rps>=50"]);
        var failing = await TestHost.RunAsync([.. load, "--assert", "p95<10s", "--assert", "achieved_rps>=100000", "--report", dir.Path]);

        Assert.True(passing.ExitCode == 0, passing.ToString());
        Assert.True(failing.ExitCode == 1, failing.ToString());
        Assert.Contains("achieved_rps>=100000: FAILED", failing.Output, StringComparison.Ordinal);
        using var report = TestHost.ReadReport(dir.Path);
        var assertions = report.RootElement.GetProperty("assertions").EnumerateArray().ToList();
        Assert.True(assertions[0].GetProperty("passed").GetBoolean());
        Assert.False(assertions[1].GetProperty("passed").GetBoolean());
    }
}

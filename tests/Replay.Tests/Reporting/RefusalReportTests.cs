using System.Globalization;

namespace Replay.Tests.Reporting;

/// <summary>
/// The report shows where a protected run refused load and by which limit: replay through a real gateway whose limits
/// refuse part of the load, then read report.json and report.html.
/// </summary>
public sealed class RefusalReportTests
{
    [Fact]
    public async Task Streamed_run_through_a_rate_limit_reports_refusals_by_limit_status_mix_and_ttft_over_time()
    {
        await using var sim = await TestHost.StartSimAsync(perTokenMs: 2);
        await using var gateway = await TestHost.StartGatewayAsync(sim, new Dictionary<string, string?>
        {
            ["Gateway:Shaping:Policies:tight:Kind"] = "TokenBucket",
            ["Gateway:Shaping:Policies:tight:TokenLimit"] = "10",
            ["Gateway:Shaping:Policies:tight:TokensPerPeriod"] = "10",
            ["Gateway:Shaping:Policies:tight:ReplenishmentPeriod"] = "00:00:01",
            ["Gateway:Shaping:Policies:tight:Partition"] = "ApiKey",
            ["ReverseProxy:Routes:openai:Metadata:Policies"] = "tight",
        });
        using var dir = TestHost.CreateTempDirectory();

        var run = await TestHost.RunAsync("load", "--target", gateway.GetAddress("Http")!.ToString(), "--rate", "50", "--duration", "3s",
            "--max-tokens", "8", "--stream", "--report", dir.Path, "--progress", "none");

        Assert.True(run.ExitCode == 0, run.ToString());
        using var report = TestHost.ReadReport(dir.Path);
        var r = report.RootElement;
        var refused = r.GetProperty("failures_by_kind").GetProperty("refused").GetInt64();
        Assert.True(refused > 50, $"{refused} refused of 150 at 50/s against 10/s\n{run}"); // about 100 of 150
        var byLimit = r.GetProperty("refused_by_limit");
        Assert.Equal(refused, byLimit.GetProperty("tight").GetProperty("count").GetInt64()); // every refusal is named
        var status429 = r.GetProperty("by_status").GetProperty("429");
        Assert.Equal(status429.GetProperty("count").GetInt64(), status429.GetProperty("failures").GetInt64()); // a refusal is a failure in by_status too
        Assert.Single(byLimit.EnumerateObject());

        long seriesRefused = 0, seriesByLimit = 0, mixed = 0, completed = 0, ttftSeconds = 0;
        foreach (var s in r.GetProperty("series").EnumerateArray())
        {
            seriesRefused += s.GetProperty("refused").GetInt64();
            seriesByLimit += s.GetProperty("refused_by_limit").TryGetProperty("tight", out var n) ? n.GetInt64() : 0;
            completed += s.GetProperty("completed").GetInt64();
            mixed += (s.GetProperty("completed").GetInt64() - s.GetProperty("failures").GetInt64()) + s.GetProperty("refused").GetInt64()
                + s.GetProperty("status_errors").GetInt64() + s.GetProperty("timeouts").GetInt64() + s.GetProperty("connection_errors").GetInt64();
            ttftSeconds += s.GetProperty("ttft_p95_ms").GetDouble() > 0 && s.GetProperty("itl_p50_ms").GetDouble() > 0 ? 1 : 0;
        }

        Assert.Equal(refused, seriesRefused);
        Assert.Equal(refused, seriesByLimit);
        Assert.Equal(completed, mixed); // the status mix adds up to what completed, second by second
        Assert.True(ttftSeconds >= 2, r.GetProperty("series").ToString());

        var html = await File.ReadAllTextAsync(Path.Combine(dir.Path, "report.html"));
        Assert.Contains("Status mix over time", html, StringComparison.Ordinal);
        Assert.Contains("Time to first token and inter-token time over time", html, StringComparison.Ordinal);
        Assert.Contains("Refusals by limit", html, StringComparison.Ordinal);
        Assert.Contains("<td>tight</td><td>" + refused.ToString(CultureInfo.InvariantCulture) + "</td>", html, StringComparison.Ordinal);
        Assert.Contains("<polygon", html, StringComparison.Ordinal); // the stacked status mix is drawn
    }

    [Fact]
    public async Task WebSocket_sessions_closed_by_a_connection_limit_count_as_refused_by_that_limit()
    {
        await using var sim = await TestHost.StartSimAsync(perTokenMs: 20);
        await using var gateway = await TestHost.StartGatewayAsync(sim, new Dictionary<string, string?>
        {
            ["Gateway:Shaping:Policies:one-ws:Kind"] = "WebSocket",
            ["Gateway:Shaping:Policies:one-ws:PermitLimit"] = "1",
            ["Gateway:Shaping:Policies:one-ws:Partition"] = "ClientAddress",
            ["ReverseProxy:Routes:websocket-stream:Metadata:Policies"] = "one-ws",
        });
        using var dir = TestHost.CreateTempDirectory();

        // Each session holds its connection for about 20 tokens × 20 ms; at 10 sessions/s most find the one slot taken.
        var run = await TestHost.RunAsync("load", "--protocol", "websocket", "--target", gateway.GetAddress("WebSocket")!.ToString(), "--rate", "10", "--duration", "2s",
            "--max-tokens", "20", "--report", dir.Path, "--progress", "none", "--log-requests", Path.Combine(dir.Path, "requests.jsonl"));

        Assert.True(run.ExitCode == 0, run.ToString());
        using var report = TestHost.ReadReport(dir.Path);
        var r = report.RootElement;
        var kinds = r.GetProperty("failures_by_kind");
        var refused = kinds.GetProperty("refused").GetInt64();
        Assert.True(refused >= 5, File.ReadAllText(Path.Combine(dir.Path, "requests.jsonl")));
        Assert.Equal(0, kinds.GetProperty("connection").GetInt64()); // a limit's close is a refusal, not a broken connection
        Assert.Equal(refused, r.GetProperty("refused_by_limit").GetProperty("one-ws").GetProperty("count").GetInt64());
        Assert.True(r.GetProperty("succeeded").GetInt64() >= 1, r.ToString());
        Assert.True(r.GetProperty("by_status").TryGetProperty("ws:1008", out _), r.GetProperty("by_status").ToString());
    }
}

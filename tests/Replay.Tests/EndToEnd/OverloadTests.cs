using System.Text.Json;
using Replay.Clients;

namespace Replay.Tests.EndToEnd;

/// <summary>
/// Long overloads and targets that go away: the run must end with a report and a clear exit code, however long the
/// backlog of late requests grows, and keep measuring every request from its intended send time.
/// </summary>
[Collection(RealTimeGroup.Name)]
public sealed class OverloadTests
{
    /// <summary>
    /// The crash of the 3x-overload demo, scaled down: a 2-slot simulator (about 5 requests/s) is offered 250/s for
    /// 8 s, so the backlog of outstanding requests (each HTTP/1.1 request holding a socket) passes the process's
    /// open-file limit (512 here, 20,000 on the demo machine). Before the socket budget the connection count followed
    /// the backlog until socket() failed with EMFILE and the runtime, starved of descriptors, died ("Out of memory.",
    /// SIGSEGV, or an exception reading /proc). Now the requests beyond the budget wait for a connection, the wait
    /// counts as schedule lag, those that wait past --timeout fail as timeouts, and the run ends with its report.
    /// </summary>
    [Fact(Timeout = 90_000)]
    public async Task A_long_overload_of_a_slow_server_ends_with_a_report_bounded_sockets_and_bounded_memory()
    {
        await using var sim = await TestHost.StartSimAsync(perTokenMs: 25, slots: 2);
        using var dir = TestHost.CreateTempDirectory();

        await using var replay = Processes.StartReplay(
            ["load", "--target", sim.HttpAddress.ToString(), "--rate", "250", "--duration", "8s", "--timeout", "4s", "--max-tokens", "16",
             "--report", dir.Path, "--progress", "none"],
            openFiles: 512);
        var exit = await replay.WaitForExitAsync(TimeSpan.FromSeconds(75));

        var output = $"exit {exit}\n{replay.StandardOutput}\n{replay.StandardError}";
        Assert.True(exit == 0, output);
        using var report = TestHost.ReadReport(dir.Path);
        var root = report.RootElement;
        Assert.Equal(2000, root.GetProperty("planned").GetInt64());
        Assert.Equal(2000, root.GetProperty("requests").GetInt64()); // every request accounted for
        var kinds = root.GetProperty("failures_by_kind");
        Assert.True(kinds.GetProperty("connection").GetInt64() == 0, $"connection failures mean descriptors ran out\n{output}");
        Assert.True(kinds.GetProperty("timeout").GetInt64() > 1000, output); // the server finishes ~5/s: most time out
        Assert.True(root.GetProperty("succeeded").GetInt64() > 0, output);

        var connections = root.GetProperty("connections");
        var limit = connections.GetProperty("limit").GetInt32();
        Assert.InRange(limit, 8, 512 - ConnectionBudget.Reserve(512));
        Assert.InRange(connections.GetProperty("peak_in_use").GetInt32(), 1, limit);
        Assert.True(connections.GetProperty("waits").GetInt64() > 0, output);

        // Honest measurement: the wait for a connection is schedule lag, and latency (from the intended time) holds it.
        var lagMax = root.GetProperty("schedule_lag_ms").GetProperty("max").GetDouble();
        Assert.True(lagMax > 1000, $"lag max {lagMax} ms");
        Assert.True(root.GetProperty("latency_ms").GetProperty("max").GetDouble() >= lagMax);
        Assert.True(root.GetProperty("generator").GetProperty("peak_working_set_mb").GetDouble() < 250, output);
    }

    /// <summary>A simulator killed mid-run: the in-flight requests and the later ones fail to connect, the run ends on schedule with its report, and exit code 5 says the target went away.</summary>
    [Fact(Timeout = 60_000)]
    public async Task A_target_killed_mid_run_gives_a_report_and_exit_code_5()
    {
        await using var sim = await Processes.StartSimAsync("--Sim:Slots=8", "--Sim:PerTokenMs=20", "--Sim:Queue=10000");
        using var dir = TestHost.CreateTempDirectory();

        var run = TestHost.RunAsync(["load", "--target", sim.HttpAddress.ToString(), "--rate", "200", "--duration", "5s", "--max-tokens", "16",
            "--report", dir.Path, "--progress", "none"]);
        await Task.Delay(TimeSpan.FromSeconds(2));
        sim.Process.Kill();
        var result = await run;

        Assert.True(result.ExitCode == 5, result.ToString());
        Assert.Contains("stopped answering", result.Error, StringComparison.Ordinal);
        using var report = TestHost.ReadReport(dir.Path);
        var root = report.RootElement;
        Assert.Equal(1000, root.GetProperty("requests").GetInt64());
        Assert.True(root.GetProperty("failures_by_kind").GetProperty("connection").GetInt64() > 300, result.ToString());
        Assert.True(root.GetProperty("succeeded").GetInt64() > 0, result.ToString());
    }
}

using System.Net;
using System.Net.Sockets;

namespace Replay.Tests.Cli;

/// <summary>What the console says: the flag the user gave, a plan for every load that ends, what "in flight" counts.</summary>
[Collection(RealTimeGroup.Name)]
public sealed class ConsoleTests
{
    [Fact(Timeout = 60_000)]
    public async Task An_unreachable_target_is_named_by_the_flag_the_user_gave()
    {
        var closed = ClosedPort();

        var viaTarget = await TestHost.RunAsync("load", "--target", closed, "--rate", "1", "--duration", "1s", "--progress", "none");
        Assert.True(viaTarget.ExitCode == 3, viaTarget.ToString());
        Assert.Contains($"--target {closed}", viaTarget.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("--http-target", viaTarget.Error, StringComparison.Ordinal);

        var viaHttpTarget = await TestHost.RunAsync("load", "--http-target", closed, "--rate", "1", "--duration", "1s", "--progress", "none");
        Assert.True(viaHttpTarget.ExitCode == 3, viaHttpTarget.ToString());
        Assert.Contains($"--http-target {closed}", viaHttpTarget.Error, StringComparison.Ordinal);

        var webSocket = await TestHost.RunAsync("load", "--target", closed, "--protocol", "websocket", "--rate", "1", "--duration", "1s", "--progress", "none");
        Assert.True(webSocket.ExitCode == 3, webSocket.ToString());
        Assert.Contains("--target ws://", webSocket.Error, StringComparison.Ordinal);
    }

    [Fact(Timeout = 90_000)]
    public async Task A_timed_load_has_a_plan_the_progress_line_says_what_is_in_flight_and_each_sweep_step_prints_its_plan()
    {
        await using var sim = await TestHost.StartSimAsync();
        var target = sim.HttpAddress.ToString();

        var poisson = await TestHost.RunAsync("load", "--target", target, "--rate", "20", "--duration", "2s", "--arrivals", "poisson", "--max-tokens", "2", "--progress", "plain");
        Assert.True(poisson.ExitCode == 0, poisson.ToString());
        Assert.DoesNotContain("unbounded", poisson.Error + poisson.Output, StringComparison.Ordinal);
        Assert.Contains("planned: about 40 request(s) over 2 s (poisson arrivals)", poisson.Error, StringComparison.Ordinal);
        Assert.Matches(@"in flight \d+ req / \d+ sessions", poisson.Output);

        var closedModel = await TestHost.RunAsync("load", "--target", target, "--users", "2", "--duration", "1s", "--max-tokens", "2", "--progress", "none");
        Assert.True(closedModel.ExitCode == 0, closedModel.ToString());
        Assert.Contains("planned: 2 user(s) for 1 s", closedModel.Error, StringComparison.Ordinal);

        var sweep = await TestHost.RunAsync("sweep", "--target", target, "--rate", "10", "--to", "12.5", "--step-every", "1s", "--max-tokens", "2", "--progress", "none");
        Assert.True(sweep.ExitCode == 0, sweep.ToString());
        Assert.DoesNotContain("unbounded", sweep.Error + sweep.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("planned:", sweep.Error, StringComparison.Ordinal); // the workload's plan is not what a sweep sends
        Assert.Contains("offered/s  planned", sweep.Output, StringComparison.Ordinal);
        Assert.Matches(@"\n\s+1\s+10\s+10\s", sweep.Output); // step 1: 10/s for 1 s, 10 planned
        Assert.Matches(@"\n\s+2\s+12\.5\s+13\s", sweep.Output); // step 2: 12.5/s for 1 s, 13 planned
    }

    [Fact(Timeout = 30_000)]
    public async Task A_mistyped_flag_gets_a_did_you_mean_and_its_value_is_not_reported_again()
    {
        var result = await TestHost.RunAsync("load", "--target", "http://127.0.0.1:9", "--rat", "10", "--duraton=1s");

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("unknown flag '--rat' for 'replay load' (did you mean '--rate'?)", result.Error, StringComparison.Ordinal);
        Assert.Contains("unknown flag '--duraton' for 'replay load' (did you mean '--duration'?)", result.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("'10'", result.Error, StringComparison.Ordinal);

        var far = await TestHost.RunAsync("run", "--source", "x", "--zzzzzz");
        Assert.True(far.ExitCode == 2, far.ToString());
        Assert.Contains("unknown flag '--zzzzzz' for 'replay run'.", far.Error, StringComparison.Ordinal);
    }

    private static string ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return $"http://127.0.0.1:{port}/";
    }
}

using System.Text.Json;

namespace Replay.Tests.EndToEnd;

/// <summary>A stalled server shows in the percentiles: latency is measured from the intended send time.</summary>
[Collection(RealTimeGroup.Name)]
public sealed class CoordinatedOmissionTests
{
    [Fact(Timeout = 60_000)]
    public async Task A_one_second_stall_shows_in_p99_while_the_uncorrected_service_time_hides_it()
    {
        await using var sim = await TestHost.StartSimAsync(perTokenMs: 1);
        using var dir = TestHost.CreateTempDirectory();
        using var http = new HttpClient { BaseAddress = sim.HttpAddress };

        // Four requests in flight at most, like a closed-loop tool with four connections: during the stall the
        // schedule cannot send, and only the intended-time measurement charges the wait to the requests it delayed.
        // A 1 s unmeasured warm-up first, so a cold simulator (JIT, tokenizer) does not blur the stall; the stall then
        // comes about 1.5 s into the measured 4 s.
        var run = TestHost.RunAsync(["load", "--rate", "200", "--duration", "4s", "--warmup", "1s", "--max-tokens", "2", "--max-inflight", "4", "--report", dir.Path, .. TestHost.Targets(sim)]);
        await Task.Delay(TimeSpan.FromSeconds(2.5));
        using (var stall = await http.PostAsync(new Uri("/sim/stall?ms=1000", UriKind.Relative), null))
        {
            stall.EnsureSuccessStatusCode();
        }

        var result = await run;

        Assert.True(result.ExitCode == 0, result.ToString());
        using var report = TestHost.ReadReport(dir.Path);
        var root = report.RootElement;
        var p99 = root.GetProperty("latency_ms").GetProperty("p99").GetDouble();
        var naiveP99 = root.GetProperty("service_time_ms").GetProperty("p99").GetDouble();
        Assert.True(p99 >= 800, $"p99 {p99} ms should show the 1 s stall");
        Assert.True(naiveP99 < 500, $"the uncorrected p99 {naiveP99} ms was expected to hide the stall\n{result}");
        Assert.True(root.GetProperty("schedule_lag_ms").GetProperty("max").GetDouble() >= 800);
        Assert.Equal(800, root.GetProperty("requests").GetInt64());
    }
}

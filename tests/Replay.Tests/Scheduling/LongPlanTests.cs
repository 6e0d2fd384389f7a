using Contracts.Recording;
using Replay.Cli;

namespace Replay.Tests.Scheduling;

/// <summary>
/// Found by a newcomer's review of issue 15 (goreplay#522, #680: clock steps in captures): one record stamped at Unix
/// time 0 among today's made a plan that waited about 57 years, with only an out-of-order warning as a hint. The run now
/// says how long its plan spans and how to cut it, before it starts waiting.
/// </summary>
public sealed class LongPlanTests
{
    [Fact]
    public async Task A_plan_spanning_more_than_a_day_is_said_before_the_run_with_the_way_out()
    {
        using var dir = TestHost.CreateTempDirectory();
        const string Name = "clockstep";
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000;
        List<ExchangeRecord> exchanges = [Recordings.Http(Name, "early", 1, 0, streamed: false, "hi"), Recordings.Http(Name, "today", 1, now, streamed: false, "hi")];
        await using (var store = new FileRecordingStore(dir.Combine("store")))
        {
            await store.StartAsync(Name, CancellationToken.None);
            await store.AppendAsync(Name, exchanges, Recordings.Sessions(exchanges), CancellationToken.None);
            await store.StopAsync(Name, CancellationToken.None);
        }

        await using var sim = await TestHost.StartSimAsync();
        using var output = new StringWriter();
        using var error = new StringWriter();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5)); // the run itself would wait for decades
        await ReplayApp.RunAsync(["run", "--source", "file:" + dir.Combine("store"), "--recording", Name, "--target", sim.HttpAddress.ToString(), "--progress", "none"],
            output, error, cts.Token);

        Assert.Contains("--max-gap", error.ToString(), StringComparison.Ordinal);
        Assert.Contains("last session starts", error.ToString(), StringComparison.Ordinal);
    }
}

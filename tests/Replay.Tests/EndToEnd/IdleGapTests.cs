using System.Diagnostics;
using Contracts.Recording;

namespace Replay.Tests.EndToEnd;

/// <summary><c>--max-gap</c> against a real simulator: a recording with a long idle stretch, stored out of order.</summary>
[Collection(RealTimeGroup.Name)]
public sealed class IdleGapTests
{
    [Fact(Timeout = 60_000)]
    public async Task A_20_s_idle_stretch_is_cut_to_the_max_gap_and_out_of_order_records_are_sorted_and_reported()
    {
        using var dir = TestHost.CreateTempDirectory();
        const string Name = "gappy";

        // Two bursts of 4 one-request sessions, 20 s apart, stored with the second burst first.
        var exchanges = new List<ExchangeRecord>();
        for (var s = 0; s < 8; s++)
        {
            var start = Recordings.Origin + (s < 4 ? s * 100_000L : 20_000_000L + ((s - 4) * 100_000L));
            exchanges.Add(Recordings.Http(Name, $"s-{s}", 1, start, streamed: false, $"s {s}", maxTokens: 2));
        }

        var stored = exchanges.Skip(4).Concat(exchanges.Take(4)).ToList();
        await using (var store = new FileRecordingStore(dir.Combine("store")))
        {
            await store.StartAsync(Name, CancellationToken.None);
            await store.AppendAsync(Name, stored, Recordings.Sessions(stored), CancellationToken.None);
            await store.StopAsync(Name, CancellationToken.None);
        }

        await using var sim = await TestHost.StartSimAsync();
        var clock = Stopwatch.StartNew();
        var run = await TestHost.RunAsync([
            "run", "--source", "file:" + dir.Combine("store"), "--recording", Name, "--max-gap", "1s",
            "--report", dir.Combine("out"), .. TestHost.Targets(sim)]);
        clock.Stop();

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"the run took {clock.Elapsed}; the 20 s gap should have been cut to 1 s");
        Assert.Equal(8, sim.Stats.Requests);
        using var report = TestHost.ReadReport(dir.Combine("out"));
        var r = report.RootElement;
        // Idle from the end of the fourth exchange (0.3 s + 50 ms) to 20 s: 19.65 s, of which 1 s is kept.
        Assert.Equal(18.65, r.GetProperty("source_time_removed_s").GetDouble(), 3);
        var disorder = r.GetProperty("out_of_order_records");
        Assert.Equal(4, disorder.GetProperty("count").GetInt64());
        Assert.Equal(4, disorder.GetProperty("largest_displacement").GetInt64());
        Assert.Contains("18.65 s of idle source time removed", run.Output, StringComparison.Ordinal);
        Assert.Contains("4 source record(s) sorted by start", run.Output, StringComparison.Ordinal);
    }

    [Fact(Timeout = 60_000)]
    public async Task Limit_means_at_most_n_requests_sent_with_amplification_and_with_session_arrivals()
    {
        using var dir = TestHost.CreateTempDirectory();
        await Recordings.WriteCaptureAsync(dir.Combine("store"), "capture");
        await using var sim = await TestHost.StartSimAsync();

        var amplified = await TestHost.RunAsync([
            "run", "--source", "file:" + dir.Combine("store"), "--recording", "capture", "--amplify", "3", "--speed", "4", "--limit", "10",
            "--report", dir.Combine("a"), .. TestHost.Targets(sim)]);

        Assert.True(amplified.ExitCode == 0, amplified.ToString());
        Assert.Equal(10, sim.Stats.Requests);
        using (var report = TestHost.ReadReport(dir.Combine("a")))
        {
            Assert.Equal(10, report.RootElement.GetProperty("requests").GetInt64());
        }

        // Sessions of 3 requests drawn by session arrivals: 10 allows three whole sessions (9 requests), not a fourth.
        var before = sim.Stats.Requests;
        var sessions = await TestHost.RunAsync([
            "run", "--source", "file:" + dir.Combine("store"), "--recording", "capture", "--rate", "20", "--duration", "2s", "--session-arrivals",
            "--limit", "10", "--report", dir.Combine("b"), .. TestHost.Targets(sim)]);

        Assert.True(sessions.ExitCode == 0, sessions.ToString());
        Assert.InRange(sim.Stats.Requests - before, 1, 10);
        using (var report = TestHost.ReadReport(dir.Combine("b")))
        {
            Assert.InRange(report.RootElement.GetProperty("requests").GetInt64(), 1, 10);
        }
    }
}

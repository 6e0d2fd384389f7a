using System.Diagnostics;
using System.Text.Json;
using Contracts.Recording;
using Replay.Scheduling;

namespace Replay.Tests.Scheduling;

/// <summary>No request leaves before its intended time, so latency (from the intended time) is never below service time.</summary>
[Collection(RealTimeGroup.Name)]
public sealed class NeverEarlyTests
{
    [Fact(Timeout = 30_000)]
    public async Task A_fine_timer_wait_never_ends_before_its_due_time()
    {
        using var timer = new FineTimer(TimeProvider.System);
        var random = new Random(7);
        var start = Stopwatch.GetTimestamp();
        var dues = Enumerable.Range(0, 400).Select(_ => start + (long)(random.NextDouble() * 0.05 * Stopwatch.Frequency)).ToArray();
        var ends = await Task.WhenAll(dues.Select(async due =>
        {
            await Task.Yield();
            await timer.WaitUntilAsync(due, CancellationToken.None);
            return Stopwatch.GetTimestamp();
        }));

        for (var i = 0; i < dues.Length; i++)
        {
            Assert.True(ends[i] >= dues[i], $"wait {i} ended {(dues[i] - ends[i]) * 1000.0 / Stopwatch.Frequency} ms early");
        }
    }

    [Fact(Timeout = 90_000)]
    public async Task Every_follow_up_request_leaves_at_or_after_its_intended_time_and_latency_is_never_below_service_time()
    {
        using var dir = TestHost.CreateTempDirectory();
        const string Name = "follow-ups";

        // 120 sessions of 6 exchanges each (720 requests, 600 of them follow-ups) with think times of 1 to 7 ms: short
        // enough that a coarse timer firing early would send them before their time.
        var exchanges = new List<ExchangeRecord>();
        for (var s = 0; s < 120; s++)
        {
            var start = Recordings.Origin + (s * 20_000L);
            for (var k = 1; k <= 6; k++)
            {
                exchanges.Add(Recordings.Http(Name, $"s-{s}", k, start, streamed: k % 2 == 0, $"s {s} k {k}", maxTokens: 2));
                start += 50_000 + (1_000 * (1 + ((s + k) % 7)));
            }
        }

        exchanges.Sort(static (a, b) => a.Timing.StartUnixMicros.CompareTo(b.Timing.StartUnixMicros));
        await using (var store = new FileRecordingStore(dir.Combine("store")))
        {
            await store.StartAsync(Name, CancellationToken.None);
            await store.AppendAsync(Name, exchanges, Recordings.Sessions(exchanges), CancellationToken.None);
            await store.StopAsync(Name, CancellationToken.None);
        }

        await using var sim = await TestHost.StartSimAsync();
        var log = dir.Combine("requests.jsonl");
        var result = await TestHost.RunAsync([
            "run", "--source", "file:" + dir.Combine("store"), "--recording", Name, "--log-requests", log,
            "--report", dir.Combine("out"), .. TestHost.Targets(sim)]);

        Assert.True(result.ExitCode == 0, result.ToString());
        var entries = File.ReadAllLines(log).Select(static l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        Assert.Equal(720, entries.Count);
        var early = entries.Where(static e => e.GetProperty("sent_ms").GetDouble() < e.GetProperty("intended_ms").GetDouble()).ToList();
        Assert.True(early.Count == 0, $"{early.Count} of 720 requests left before their intended time, e.g. {(early.Count > 0 ? early[0].ToString() : string.Empty)}");

        using var report = TestHost.ReadReport(dir.Combine("out"));
        var latency = report.RootElement.GetProperty("latency_ms");
        var service = report.RootElement.GetProperty("service_time_ms");
        foreach (var p in new[] { "p50", "p90", "p95", "p99", "p999", "max", "mean" })
        {
            Assert.True(latency.GetProperty(p).GetDouble() >= service.GetProperty(p).GetDouble(), $"latency {p} {latency} is below service time {service}");
        }
    }
}

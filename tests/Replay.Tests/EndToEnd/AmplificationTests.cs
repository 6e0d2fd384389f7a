using System.Globalization;
using System.Text.Json;
using TestSupport;

namespace Replay.Tests.EndToEnd;

/// <summary>Replays of recordings and traces against an in-process simulator, counted at the simulator.</summary>
[Collection(RealTimeGroup.Name)]
public sealed class AmplificationTests
{
    [Fact(Timeout = 60_000)]
    public async Task A_recorded_capture_at_amplify_3_sends_three_times_the_requests_with_every_session_in_order()
    {
        using var dir = TestHost.CreateTempDirectory();
        var recorded = await Recordings.WriteCaptureAsync(dir.Combine("store"), "capture");
        await using var sim = await TestHost.StartSimAsync();
        var log = dir.Combine("requests.jsonl");

        var result = await TestHost.RunAsync([
            "run", "--source", "file:" + dir.Combine("store"), "--recording", "capture", "--amplify", "3", "--speed", "2",
            "--log-requests", log, "--report", dir.Combine("out"), .. TestHost.Targets(sim)]);

        Assert.True(result.ExitCode == 0, result.ToString());
        var stats = sim.Stats;
        Assert.InRange(stats.Requests, (long)Math.Floor(recorded * 3 * 0.98), (long)Math.Ceiling(recorded * 3 * 1.02));
        Assert.Equal(stats.Requests, stats.Completed);

        var entries = File.ReadAllLines(log).Select(static l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        Assert.Equal(recorded * 3, entries.Count);
        Assert.All(entries, static e => Assert.Equal("none", e.GetProperty("failure").GetString()));
        var sessions = entries.GroupBy(static e => e.GetProperty("session").GetString()!).ToList();
        Assert.Equal(30, sessions.Count); // 10 recorded sessions, each sent 3 times with its own id
        Assert.Equal(10, sessions.Count(static g => g.Key.EndsWith("~2", StringComparison.Ordinal)));
        foreach (var session in sessions)
        {
            // Order kept: by recorded sequence then WebSocket turn, each request left after the previous one ended.
            var ordered = session.OrderBy(static e => e.GetProperty("seq").GetInt32()).ThenBy(static e => e.GetProperty("turn").GetInt32()).ToList();
            for (var i = 1; i < ordered.Count; i++)
            {
                Assert.True(
                    ordered[i].GetProperty("sent_ms").GetDouble() >= ordered[i - 1].GetProperty("end_ms").GetDouble(),
                    $"session {session.Key}: request {i + 1} left before request {i} ended");
            }
        }

        using var report = TestHost.ReadReport(dir.Combine("out"));
        Assert.Equal(recorded * 3, report.RootElement.GetProperty("requests").GetInt64());
        Assert.Equal(3, report.RootElement.GetProperty("amplify").GetDouble());
        var byStatus = report.RootElement.GetProperty("by_status");
        Assert.Equal(18 * 3, byStatus.GetProperty("200").GetProperty("count").GetInt64());
        Assert.Equal(4 * 3, byStatus.GetProperty("grpc:OK").GetProperty("count").GetInt64());
        Assert.Equal(6 * 3, byStatus.GetProperty("ws:ok").GetProperty("count").GetInt64());
        Assert.True(report.RootElement.GetProperty("ttft_ms").GetProperty("count").GetInt64() > 0);
    }

    [Fact(Timeout = 60_000)]
    public async Task The_first_60_s_of_an_Azure_trace_at_speed_6_amplify_3_delivers_three_times_its_requests_and_generated_tokens()
    {
        var trace = RepoPaths.AzureConversationTrace;
        Assert.True(File.Exists(trace), $"the Azure trace is expected at {trace}");
        var (rows, tokens) = FirstRows(trace, TimeSpan.FromSeconds(60));
        Assert.True(rows > 100, $"only {rows} rows in the first minute");
        await using var sim = await TestHost.StartSimAsync(perTokenMs: 0.01, slots: 4096);
        using var dir = TestHost.CreateTempDirectory();

        var result = await TestHost.RunAsync([
            "run", "--source", "azure-llm:" + trace, "--duration", "60s", "--speed", "6", "--amplify", "3", "--report", dir.Path,
            .. TestHost.Targets(sim)]);

        Assert.True(result.ExitCode == 0, result.ToString());
        var stats = sim.Stats;
        Assert.InRange(stats.Completed, (long)Math.Floor(rows * 3 * 0.98), (long)Math.Ceiling(rows * 3 * 1.02));
        Assert.InRange(stats.GeneratedTokens, (long)Math.Floor(tokens * 3 * 0.98), (long)Math.Ceiling(tokens * 3 * 1.02));
        using var report = TestHost.ReadReport(dir.Path);
        var duration = report.RootElement.GetProperty("duration_s").GetDouble();
        Assert.InRange(duration, 8, 14); // 60 s of trace at speed 6 ≈ 10 s
        Assert.Equal(tokens * 3, report.RootElement.GetProperty("output_tokens").GetInt64());
    }

    [Fact(Timeout = 60_000)]
    public async Task Speed_2_halves_the_duration_of_a_replay()
    {
        using var dir = TestHost.CreateTempDirectory();
        await Recordings.WriteCaptureAsync(dir.Combine("store"), "capture");
        await using var sim = await TestHost.StartSimAsync();
        string[] replay = ["run", "--source", dir.Combine("store"), "--recording", "capture", "--duration", "4s", .. TestHost.Targets(sim)];

        var normal = await TestHost.RunAsync([.. replay, "--log-requests", dir.Combine("x1.jsonl")]);
        var fast = await TestHost.RunAsync([.. replay, "--speed", "2", "--log-requests", dir.Combine("x2.jsonl")]);

        Assert.True(normal.ExitCode == 0, normal.ToString());
        Assert.True(fast.ExitCode == 0, fast.ToString());
        var (n1, span1) = SendSpan(dir.Combine("x1.jsonl"));
        var (n2, span2) = SendSpan(dir.Combine("x2.jsonl"));
        Assert.Equal(n1, n2);
        // --duration 4s keeps what started in the first 4 s of the recording: the last request is intended at 3.6 s.
        Assert.True(span1 is >= 3500 and <= 4200, $"last send at {span1} ms at speed 1");
        Assert.True(span2 / span1 is >= 0.45 and <= 0.56, $"last send at {span2} ms at speed 2 against {span1} ms at speed 1");
    }

    /// <summary>Requests and the time from the run's start to the last send, from a request log.</summary>
    private static (int Count, double SpanMs) SendSpan(string log)
    {
        var sent = File.ReadAllLines(log).Select(static l => JsonDocument.Parse(l).RootElement.GetProperty("sent_ms").GetDouble()).ToList();
        return (sent.Count, sent.Max());
    }

    private static (int Rows, long Tokens) FirstRows(string path, TimeSpan window)
    {
        var lines = File.ReadLines(path).Skip(1).Select(static l => l.Split(',')).ToList();
        var t0 = DateTime.Parse(lines[0][0], CultureInfo.InvariantCulture);
        var rows = lines.Where(l => DateTime.Parse(l[0], CultureInfo.InvariantCulture) - t0 < window).ToList();
        return (rows.Count, rows.Sum(static l => long.Parse(l[2], CultureInfo.InvariantCulture)));
    }
}

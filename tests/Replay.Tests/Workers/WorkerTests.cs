using System.Text.Json;
using Replay.Cli;
using Replay.Measurement;
using TestSupport;

namespace Replay.Tests.Workers;

/// <summary>Runs split among replay workers through a real redis-server: the same totals as one process, histograms merged exactly, a killed worker's slices finished by another.</summary>
[Collection(RealTimeGroup.Name)]
public sealed class WorkerTests
{
    [Fact(Timeout = 90_000)]
    public async Task Two_workers_give_the_same_totals_as_one_and_the_merged_p99_is_the_p99_of_all_samples()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();
        string[] load = ["load", "--target", sim.HttpAddress.ToString(), "--rate", "200", "--duration", "2s", "--max-tokens", "4", "--progress", "none", "--redis", redis.ConnectionString];

        // One worker.
        await using (var one = InProcessWorker.Start(redis.ConnectionString, "solo", dir.Combine("solo.jsonl")))
        {
            var result = await TestHost.RunAsync([.. load, "--workers", "1", "--report", dir.Combine("one")]);
            Assert.True(result.ExitCode == 0, result.ToString());
        }

        // Two workers.
        await using (var a = InProcessWorker.Start(redis.ConnectionString, "a", dir.Combine("a.jsonl")))
        await using (var b = InProcessWorker.Start(redis.ConnectionString, "b", dir.Combine("b.jsonl")))
        {
            var result = await TestHost.RunAsync([.. load, "--workers", "2", "--report", dir.Combine("two")]);
            Assert.True(result.ExitCode == 0, result.ToString());
        }

        using var oneReport = TestHost.ReadReport(dir.Combine("one"));
        using var twoReport = TestHost.ReadReport(dir.Combine("two"));
        foreach (var total in new[] { "requests", "sent", "succeeded", "failures", "output_tokens", "planned" })
        {
            Assert.Equal(oneReport.RootElement.GetProperty(total).GetInt64(), twoReport.RootElement.GetProperty(total).GetInt64());
        }

        Assert.Equal(400, twoReport.RootElement.GetProperty("requests").GetInt64());
        var workers = twoReport.RootElement.GetProperty("workers");
        Assert.Equal(2, workers.GetProperty("names").GetArrayLength()); // both took part
        Assert.Equal(0, workers.GetProperty("lost_sessions").GetInt64());

        // The p99 of every sample: the latencies both workers logged (exactly as recorded), in one histogram.
        var all = Histograms.Create();
        var samples = 0;
        foreach (var log in new[] { "a.jsonl", "b.jsonl" })
        {
            foreach (var line in File.ReadLines(dir.Combine(log)))
            {
                using var entry = JsonDocument.Parse(line);
                Histograms.Record(all, entry.RootElement.GetProperty("latency_us").GetInt64());
                samples++;
            }
        }

        Assert.Equal(400, samples);
        var latency = twoReport.RootElement.GetProperty("latency_ms");
        Assert.Equal(Histograms.Ms(all, 99), latency.GetProperty("p99").GetDouble());
        Assert.Equal(Histograms.Ms(all, 50), latency.GetProperty("p50").GetDouble());
        Assert.Equal(Histograms.MaxMs(all), latency.GetProperty("max").GetDouble());
    }

    /// <summary>
    /// A run split among workers reports the model server's prefix cache hit rate as one process does: the vLLM
    /// counters read at the epoch (after the workers' warm-up) and after the last result. 2 prefixes of 200 tokens,
    /// warmed up by each worker, so each measured request finds 192 of its 216 prompt tokens cached.
    /// </summary>
    [Fact(Timeout = 90_000)]
    public async Task Workers_report_the_prefix_cache_hit_rate_of_the_run()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();
        await using (var a = InProcessWorker.Start(redis.ConnectionString, "a", dir.Combine("a.jsonl")))
        await using (var b = InProcessWorker.Start(redis.ConnectionString, "b", dir.Combine("b.jsonl")))
        {
            var result = await TestHost.RunAsync(["load", "--target", sim.HttpAddress.ToString(), "--rate", "20", "--duration", "2s", "--warmup", "500ms",
                "--prefix-groups", "2", "--prefix-tokens", "200", "--prompt-tokens", "16", "--max-tokens", "4", "--progress", "none",
                "--workers", "2", "--redis", redis.ConnectionString, "--report", dir.Combine("out")]);
            Assert.True(result.ExitCode == 0, result.ToString());
            Assert.Contains("prefix cache  88.9% hit", result.Output, StringComparison.Ordinal);
        }

        using var report = TestHost.ReadReport(dir.Combine("out"));
        var root = report.RootElement;
        Assert.Equal(40, root.GetProperty("requests").GetInt64());
        var cache = root.GetProperty("prefix_cache");
        // The counters are read 10 ms before the epoch, when the first measured request is sent: on a loaded machine
        // that read can be late by a request or two, and every request has the same ratio, so the rate is exact.
        Assert.InRange(cache.GetProperty("queries").GetDouble(), 38 * 216, 40 * 216);
        Assert.Equal(cache.GetProperty("queries").GetDouble() / 216 * 192, cache.GetProperty("hits").GetDouble());
        Assert.Equal(192.0 / 216, root.GetProperty("prefix_cache_hit_rate").GetDouble(), 3);
    }

    [Fact(Timeout = 90_000)]
    public async Task A_worker_process_killed_mid_run_has_its_slices_finished_by_another_and_no_session_is_sent_twice()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();
        await using var survivor = Processes.StartReplay(["worker", "--redis", redis.ConnectionString, "--name", "survivor"]);
        await using var victim = Processes.StartReplay(["worker", "--redis", redis.ConnectionString, "--name", "victim"]);
        await Eventually.TrueAsync(() => survivor.StandardOutput.Contains("waiting for work", StringComparison.Ordinal) && victim.StandardOutput.Contains("waiting for work", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30), () => $"workers did not start:\n{survivor.StandardError}\n{victim.StandardError}");

        var run = TestHost.RunAsync(["load", "--target", sim.HttpAddress.ToString(), "--rate", "200", "--duration", "6s", "--max-tokens", "4", "--progress", "none",
            "--workers", "2", "--redis", redis.ConnectionString, "--report", dir.Path]);
        // Kill the victim while it holds a slice (a pending item of its own), two seconds into the schedule.
        using var redisClient = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        await Eventually.TrueAsync(
            async () => sim.Stats.Requests >= 400
                && (await redisClient.GetDatabase().StreamPendingMessagesAsync("replay:work", "replay-workers", 10, "victim")).Length > 0,
            TimeSpan.FromSeconds(30),
            () => "the run did not start, or the victim took no slice");
        victim.Kill();
        var result = await run;

        Assert.True(result.ExitCode == 0, result.ToString());
        using var report = TestHost.ReadReport(dir.Path);
        var root = report.RootElement;
        var workers = root.GetProperty("workers");
        Assert.True(workers.GetProperty("taken_over").GetInt32() >= 1, result.ToString());
        Assert.Equal(0, workers.GetProperty("missing_slices").GetInt32());
        var measured = root.GetProperty("requests").GetInt64();
        var lost = workers.GetProperty("lost_sessions").GetInt64();
        Assert.Equal(1200, measured + lost); // every session was sent by someone, or lost in flight with the victim
        Assert.True(lost < 400, result.ToString()); // at most the victim's unfinished slices
        await Eventually.TrueAsync(() => sim.Stats.Inflight == 0, TimeSpan.FromSeconds(10), () => "the simulator is still busy");
        Assert.InRange(sim.Stats.Requests, measured, 1200); // none sent twice: the simulator saw no more than the plan
    }

    [Fact(Timeout = 60_000)]
    public async Task A_worker_closes_a_runs_connections_once_the_run_is_over()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var sim = await TestHost.StartSimAsync();
        using var connection = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        using var stop = new CancellationTokenSource();
        var worker = new Replay.Workers.Worker(connection, "retiring", null, TextWriter.Null, TextWriter.Null, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, TimeProvider.System)
        {
            RetireAfter = TimeSpan.FromSeconds(2),
        };
        var running = worker.RunAsync(stop.Token);

        var result = await TestHost.RunAsync(["load", "--target", sim.HttpAddress.ToString(), "--rate", "100", "--duration", "1s", "--max-tokens", "2", "--progress", "none",
            "--workers", "1", "--redis", redis.ConnectionString]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(1, worker.OpenRuns); // the run's clients were open while it ran
        await Eventually.TrueAsync(() => worker.OpenRuns == 0, TimeSpan.FromSeconds(10), () => "the finished run's clients stayed open");
        await stop.CancelAsync();
        await running.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void Metrics_merged_from_parts_equal_the_metrics_of_the_whole()
    {
        var time = TimeProvider.System;
        var start = time.GetTimestamp();
        var whole = new RunMetrics(time, [], keepSeconds: true);
        var merged = new RunMetrics(time, [], keepSeconds: true);
        var parts = new[] { new RunMetrics(time, [], keepSeconds: true), new RunMetrics(time, [], keepSeconds: true), new RunMetrics(time, [], keepSeconds: true) };
        foreach (var m in parts.Append(whole).Append(merged))
        {
            m.Start(start);
        }

        var random = new Random(7);
        for (var i = 0; i < 30_000; i++)
        {
            var intended = start + (long)(random.NextDouble() * 3 * time.TimestampFrequency);
            var micros = (long)Math.Exp(random.NextDouble() * 14); // 1 µs to 1.2 s, log-uniform
            var outcome = new Outcome { StatusKey = i % 10 == 0 ? "500" : "200", Failure = i % 10 == 0 ? FailureKind.Status : FailureKind.None, EndTimestamp = intended + (micros * time.TimestampFrequency / 1_000_000), Tokens = 3 };
            foreach (var m in new[] { whole, parts[i % 3] })
            {
                m.RecordStart(intended, intended);
                m.RecordCompleted(outcome, intended, intended, "r", []);
            }
        }

        foreach (var p in parts)
        {
            merged.Merge(p.Export());
        }

        Assert.Equal(whole.Completed, merged.Completed);
        Assert.Equal(whole.Failures, merged.Failures);
        Assert.Equal(whole.OutputTokens, merged.OutputTokens);
        foreach (var q in new[] { 50, 90, 99, 99.9, 100 })
        {
            Assert.Equal(whole.Latency.GetValueAtPercentile(q), merged.Latency.GetValueAtPercentile(q));
        }

        Assert.Equal(Histograms.MeanMs(whole.Latency), Histograms.MeanMs(merged.Latency));
        var wholeSeries = whole.FinishSeries();
        var mergedSeries = merged.FinishSeries();
        Assert.Equal(wholeSeries.Count, mergedSeries.Count);
        for (var s = 0; s < wholeSeries.Count; s++)
        {
            Assert.Equal(wholeSeries[s].Completed, mergedSeries[s].Completed);
            Assert.Equal(wholeSeries[s].P99, mergedSeries[s].P99);
        }

        Assert.Equal(whole.ByStatus().Select(static g => (g.Key, g.Value.Count)), merged.ByStatus().Select(static g => (g.Key, g.Value.Count)));
    }

    [Fact(Timeout = 90_000)]
    public async Task A_timed_replay_that_starts_every_session_in_the_first_second_is_split_by_session_and_the_workers_diagnostics_are_merged()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();
        const string Name = "crowded";
        var exchanges = Enumerable.Range(0, 40)
            .Select(static s => Recordings.Http(Name, $"s-{s}", 1, Recordings.Origin + (s * 10_000L), streamed: false, $"s {s}", maxTokens: 2))
            .ToList();
        await using (var store = new Contracts.Recording.FileRecordingStore(dir.Combine("store")))
        {
            await store.StartAsync(Name, CancellationToken.None);
            await store.AppendAsync(Name, exchanges, Recordings.Sessions(exchanges), CancellationToken.None);
            await store.StopAsync(Name, CancellationToken.None);
        }

        await using (var a = InProcessWorker.Start(redis.ConnectionString, "a", dir.Combine("a.jsonl")))
        await using (var b = InProcessWorker.Start(redis.ConnectionString, "b", dir.Combine("b.jsonl")))
        {
            var result = await TestHost.RunAsync(["run", "--source", "file:" + dir.Combine("store"), "--recording", Name, "--target", sim.HttpAddress.ToString(),
                "--progress", "none", "--workers", "2", "--redis", redis.ConnectionString, "--report", dir.Combine("out")]);
            Assert.True(result.ExitCode == 0, result.ToString());
        }

        // Both workers sent a share of the 40 sessions, though all start within 0.4 s (one second-slice before).
        var sentByA = File.ReadAllLines(dir.Combine("a.jsonl")).Length;
        var sentByB = File.ReadAllLines(dir.Combine("b.jsonl")).Length;
        Assert.Equal(40, sentByA + sentByB);
        Assert.True(sentByA > 0 && sentByB > 0, $"a sent {sentByA}, b {sentByB}");

        using var report = TestHost.ReadReport(dir.Combine("out"));
        var r = report.RootElement;
        Assert.Equal(2, r.GetProperty("workers").GetProperty("names").GetArrayLength());
        Assert.True(r.GetProperty("peak_concurrent_sessions").GetInt32() >= 1, r.ToString());
        var generator = r.GetProperty("generator");
        Assert.True(generator.GetProperty("cpu_s").GetDouble() > 0, generator.ToString());
        Assert.True(generator.GetProperty("cores").GetInt32() >= 2, generator.ToString()); // two workers' cores added
        var connections = r.GetProperty("connections");
        Assert.True(connections.GetProperty("peak_in_use").GetInt32() >= 1, connections.ToString());
        Assert.True(connections.GetProperty("limit").GetInt32() > 0, connections.ToString());
    }

    /// <summary>A worker running inside the test process (ReplayApp "worker"), stopped on dispose.</summary>
    private sealed class InProcessWorker : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Task<int> _run;

        private InProcessWorker(string redis, string name, string log) =>
            _run = ReplayApp.RunAsync(["worker", "--redis", redis, "--name", name, "--log-requests", log], TextWriter.Null, TextWriter.Null, _stop.Token);

        public static InProcessWorker Start(string redis, string name, string log) => new(redis, name, log);

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _run.WaitAsync(TimeSpan.FromSeconds(20));
            _stop.Dispose();
        }
    }
}

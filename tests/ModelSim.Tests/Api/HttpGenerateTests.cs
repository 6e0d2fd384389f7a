using System.Diagnostics;
using Xunit.Abstractions;
using Contracts.Tokens;
using ModelSim.Tests.Support;

namespace ModelSim.Tests.Api;

/// <summary><c>POST /v1/generate</c> over real sockets: shape, determinism, queueing, refusal, timing and counters.</summary>
public sealed class HttpGenerateTests(ITestOutputHelper output)
{
    [Fact]
    public async Task GenerateAnswersExactlyMaxTokensOfDeterministicText()
    {
        await using var sim = await Sims.StartAsync(("PrefillMs", 1), ("PerTokenMs", 1));
        using var client = Sims.Client(sim);
        var (response, body) = await Sims.PostAsync(client, "/v1/generate", new { prompt = TokenCounter.BuildPrompt(12), max_tokens = 9, session_id = "s-1" });

        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(9, (int)body!["tokens"]!);
        Assert.Equal(12, (int)body["prompt_tokens"]!);
        Assert.Equal("length", (string)body["finish_reason"]!);
        Assert.Equal(9, TokenCounter.Default.Count((string)body["text"]!));
        Assert.Equal((string)body["text"]!, await Sims.GenerateAsync(client, TokenCounter.BuildPrompt(12), 9));
    }

    [Fact]
    public async Task OutputIsDeterministicPerSeedAcrossInstances()
    {
        await using var a = await Sims.StartAsync(("Seed", 7), ("PrefillMs", 0), ("PerTokenMs", 0.5));
        await using var b = await Sims.StartAsync(("Seed", 7), ("PrefillMs", 0), ("PerTokenMs", 0.5));
        await using var c = await Sims.StartAsync(("Seed", 8), ("PrefillMs", 0), ("PerTokenMs", 0.5));
        using var ca = Sims.Client(a);
        using var cb = Sims.Client(b);
        using var cc = Sims.Client(c);

        var textA = await Sims.GenerateAsync(ca, "Tell me about GPUs.", 30);
        Assert.Equal(textA, await Sims.GenerateAsync(cb, "Tell me about GPUs.", 30));
        Assert.NotEqual(textA, await Sims.GenerateAsync(cc, "Tell me about GPUs.", 30));
        Assert.NotEqual(textA, await Sims.GenerateAsync(ca, "Tell me about CPUs.", 30));
        Assert.StartsWith(await Sims.GenerateAsync(cb, "Tell me about GPUs.", 10), textA, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WithOneSlotASecondRequestWaitsForTheFirst()
    {
        // Alone each takes 10 + 10 × 10 = 110 ms; the second waits in the queue for the first, so ≈ 220 ms.
        await using var sim = await Sims.StartAsync(("Slots", 1), ("Queue", 4), ("PrefillMs", 10), ("PrefillPerTokenMs", 0), ("PerTokenMs", 10));
        using var client = Sims.Client(sim);
        await Sims.GenerateAsync(client, "warm-up", 1); // connection and JIT out of the measurement
        var before = await Sims.TtftAsync(client);

        // Both are timed from one start, taken before either is sent: two stopwatches started one after the other could be
        // far apart on a starved machine, and the later one would see less than the schedule.
        var start = Stopwatch.GetTimestamp();
        async Task<double> Timed(string prompt)
        {
            await Sims.GenerateAsync(client, prompt, 10);
            return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }

        var latencies = await Task.WhenAll(Timed("one"), Timed("two"));
        Array.Sort(latencies);
        var ttft = await Sims.TtftAsync(client);
        output.WriteLine($"latencies: {string.Join(", ", latencies)} ms, TTFT {ttft.SumMs - before.SumMs} ms");

        // Lower bounds are the schedule; the engine never emits a token early, so CPU starvation cannot break them. That
        // the second waited is its lower bound and the queue's peak depth of 1. No wall-clock upper bound (400 and 600 ms were here): at load 20+ on 2 cores the timer and the
        // thread pool run hundreds of ms late. The upper side is checked on the engine's clock instead, which the load
        // cannot move: the first's first token is due 10 + 10 = 20 ms after it arrived, the second's 20 ms after the first
        // ends (110 ms after the first arrived) less the time it arrived after the first, so the two sum to at most 150 ms.
        Assert.True(latencies[0] >= 109, $"A request takes at least 110 ms (took {latencies[0]} ms).");
        Assert.True(latencies[1] >= 219, $"The second waits for the first: at least 220 ms (took {latencies[1]} ms).");
        Assert.Equal(2, ttft.Count - before.Count);
        Assert.InRange(ttft.SumMs - before.SumMs, 40, 150.01);
        var stats = await sim.WaitAsync(s => s.Completed == 3);
        Assert.Equal(1, stats.QueueDepthMax);
    }

    [Fact]
    public async Task LatencyFollowsTheModel()
    {
        // Lone request: 20 + 40 × 0.5 + 20 × 4 = 120 ms, its first token due 20 + 20 + 4 = 44 ms after it arrived. Beside
        // three running sequences (BatchSlowdown 1 on 4 slots) every step costs 4 × (1 + 3/3) = 8 ms: 40 + 20 × 8 = 200 ms,
        // the first token at 48 ms. The same prompt is sent again and again, so the prefix cache is off here
        // (PrefixCacheTests check what it saves).
        //
        // No wall-clock upper bound: on a loaded 2-core CI machine (load average 20+) the engine's timer, the thread pool
        // and the client all run late, by up to hundreds of ms, and "lone ≤ 150 ms" failed there. Two measures that CPU
        // starvation cannot move remain. (1) The engine never emits a token before it is due (absolute schedule; a late wake
        // only catches up) and the stopwatch starts before the request is sent, so the client's latency is a lower bound:
        // it fails a model that ignores prompt tokens (100 ms), per-token time (40 ms) or the batch (120 ms beside three).
        // (2) The other direction, a model that charges too much, is checked on the engine's clock: the TTFT the simulator
        // reports (vllm:time_to_first_token_seconds) is the first token's due time less the arrival, exact under any load
        // (a prefill or first step that costs more than the model says shows there).
        // The batch is three long requests held running while one is timed, not four sent at once: under starvation four
        // "simultaneous" requests reach the server tens of ms apart, run partly alone and finish sooner than the model's
        // full-batch figure, so a lower bound on them is not safe; with the three held, r = 4 for every step of the timed one.
        await using var sim = await Sims.StartAsync(("Slots", 4), ("PrefillMs", 20), ("PrefillPerTokenMs", 0.5), ("PerTokenMs", 4), ("BatchSlowdown", 1),
            ("PrefixCache:Enabled", false));
        using var client = Sims.Client(sim);
        var prompt = TokenCounter.BuildPrompt(40);
        await Sims.GenerateAsync(client, "warm-up", 1);
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Sims.GenerateAsync(client, "connections", 1)));
        Assert.Equal(120, sim.UnloadedLatency(40, 20).TotalMilliseconds, 6);

        var beforeLone = await Sims.TtftAsync(client);
        var lone = new List<double>();
        for (var i = 0; i < 3; i++)
        {
            lone.Add(await Sims.TimeGenerateAsync(client, prompt, 20));
        }

        var afterLone = await Sims.TtftAsync(client);
        output.WriteLine($"lone: {string.Join(", ", lone)} ms, TTFT {afterLone.SumMs - beforeLone.SumMs} ms for {afterLone.Count - beforeLone.Count}");
        Assert.True(lone.Min() >= 119, $"A lone request takes at least 120 ms (took {lone.Min()} ms).");
        Assert.Equal(3, afterLone.Count - beforeLone.Count);
        Assert.Equal(3 * 44, afterLone.SumMs - beforeLone.SumMs, 2);

        // Three requests of 2000 tokens hold the other slots for 16 s, far beyond the timed one; cancelled afterwards.
        using var release = new CancellationTokenSource();
        var background = Enumerable.Range(0, 3)
            .Select(i => Sims.PostAsync(client, "/v1/generate", new { prompt = $"background {i}", max_tokens = 2000 }, release.Token))
            .ToList();
        await sim.WaitAsync(s => s.Inflight == 3);
        var beforeBatch = await Sims.WaitForTtftCountAsync(client, afterLone.Count + 3); // their first tokens out of the figure below

        var batch = await Sims.TimeGenerateAsync(client, prompt, 20);
        var stillRunning = sim.Stats.Inflight;
        var afterBatch = await Sims.TtftAsync(client);
        await release.CancelAsync();
        foreach (var request in background)
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
        }

        output.WriteLine($"beside three: {batch} ms, TTFT {afterBatch.SumMs - beforeBatch.SumMs} ms for {afterBatch.Count - beforeBatch.Count}");
        Assert.Equal(3, stillRunning); // the three ran from the timed request's start to its end
        Assert.True(batch >= 199, $"Beside three running sequences a request takes at least 200 ms (took {batch} ms).");
        Assert.Equal(1, afterBatch.Count - beforeBatch.Count);
        Assert.Equal(48, afterBatch.SumMs - beforeBatch.SumMs, 2);
    }

    [Fact]
    public async Task AFullQueueRefusesAtOnceWith503InOpenAiShape()
    {
        await using var sim = await Sims.StartAsync(("Slots", 1), ("Queue", 1), ("PrefillMs", 1), ("PerTokenMs", 20));
        using var client = Sims.Client(sim);
        using var release = new CancellationTokenSource();
        var running = Sims.PostAsync(client, "/v1/generate", new { prompt = "a", max_tokens = 1000 }, release.Token);
        await sim.WaitAsync(s => s.Inflight == 1);
        var queued = Sims.PostAsync(client, "/v1/generate", new { prompt = "b", max_tokens = 1 });
        await sim.WaitAsync(s => s.Inflight == 1 && s.QueueDepth == 1);

        var (response, body) = await Sims.PostAsync(client, "/v1/chat/completions", new { messages = new[] { new { role = "user", content = "c" } }, max_tokens = 1 });
        var afterRefusal = sim.Stats;

        // "At once" is not a wall-clock bound (500 ms was here; a loaded CI machine can take that long to run any request):
        // the refusal came while the slot and the queue place were still taken (the running request lasts 20 s and is only
        // released below), so it did not wait for room. A server that queued it anyway would answer only after the release.
        Assert.Equal(503, (int)response.StatusCode);
        Assert.Equal((1, 1, 0L), (afterRefusal.Inflight, afterRefusal.QueueDepth, afterRefusal.Completed));
        Assert.Equal("queue_full", (string)body!["error"]!["code"]!);
        Assert.Equal("server_error", (string)body["error"]!["type"]!);
        Assert.Contains("queue", (string)body["error"]!["message"]!, StringComparison.Ordinal);
        Assert.NotNull(response.Headers.RetryAfter);

        await release.CancelAsync(); // the queued request then takes the slot
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
        Assert.Equal(200, (int)(await queued).Response.StatusCode);
        var stats = sim.Stats;
        Assert.Equal((3L, 1L, 1L, 1L), (stats.Requests, stats.Rejected, stats.Completed, stats.Cancelled));
    }

    [Fact]
    public async Task MetricsCountExactly()
    {
        // Two slots, a queue of 3, six requests at once: 2 run, 3 wait, 1 is refused.
        const int PromptTokens = 25;
        const int MaxTokens = 6;
        await using var sim = await Sims.StartAsync(("Slots", 2), ("Queue", 3), ("PrefillMs", 5), ("PerTokenMs", 15));
        using var client = Sims.Client(sim);
        sim.Stall(TimeSpan.FromMilliseconds(1000)); // hold everything until all six have arrived
        var requests = Enumerable.Range(0, 6)
            .Select(i => Sims.PostAsync(client, "/v1/generate", new { prompt = TokenCounter.BuildPrompt(PromptTokens), max_tokens = MaxTokens }))
            .ToList();
        var during = await sim.WaitAsync(s => s.Requests == 6);
        Assert.Equal((2, 3, 1L), (during.Inflight, during.QueueDepth, during.Rejected));

        var statuses = (await Task.WhenAll(requests)).Select(r => (int)r.Response.StatusCode).Order().ToList();
        Assert.Equal([200, 200, 200, 200, 200, 503], statuses);

        var stats = await sim.WaitAsync(s => s.Completed == 5);
        var metrics = await Sims.ScrapeAsync(client);
        Assert.Equal(6, metrics["modelsim_requests_total"]);
        Assert.Equal(1, metrics["modelsim_rejected_total"]);
        Assert.Equal(5, metrics["modelsim_completed_total"]);
        Assert.Equal(0, metrics["modelsim_cancelled_total"]);
        Assert.Equal(0, metrics["modelsim_inflight"]);
        Assert.Equal(0, metrics["modelsim_queue_depth"]);
        Assert.Equal(3, metrics["modelsim_queue_depth_max"]);
        Assert.Equal(5 * PromptTokens, metrics["modelsim_prompt_tokens_total"]);
        Assert.Equal(5 * MaxTokens, metrics["modelsim_generated_tokens_total"]);
        Assert.Equal(2, metrics["modelsim_slots"]);
        Assert.Equal(1, metrics["modelsim_stalls_total"]);
        Assert.Equal(stats.Requests, (long)metrics["modelsim_requests_total"]);
        Sims.AssertBalanced(stats);
    }

    [Fact]
    public async Task HealthAndModelsAnswer()
    {
        await using var sim = await Sims.StartAsync(("Model", "tiny-llm"));
        using var client = Sims.Client(sim);
        Assert.Equal(200, (int)(await client.GetAsync("/health")).StatusCode);
        var models = System.Text.Json.Nodes.JsonNode.Parse(await client.GetStringAsync("/v1/models"))!;
        Assert.Equal("list", (string)models["object"]!);
        Assert.Equal("tiny-llm", (string)models["data"]![0]!["id"]!);
        Assert.Equal("model", (string)models["data"]![0]!["object"]!);
        Assert.Single(models["data"]!.AsArray());
    }
}

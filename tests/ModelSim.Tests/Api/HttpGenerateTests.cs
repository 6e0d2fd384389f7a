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

        var latencies = await Task.WhenAll(Sims.TimeGenerateAsync(client, "one", 10), Sims.TimeGenerateAsync(client, "two", 10));
        Array.Sort(latencies);
        output.WriteLine($"latencies: {string.Join(", ", latencies)} ms");

        // Lower bounds are the schedule (less a few ms: the two stopwatches start a little apart); upper bounds are loose,
        // since a loaded machine delays both. That the second waited is its lower bound and the queue's peak depth of 1.
        Assert.InRange(latencies[0], 108, 400);
        Assert.InRange(latencies[1], 205, 600);
        var stats = await sim.WaitAsync(s => s.Completed == 3);
        Assert.Equal(1, stats.QueueDepthMax);
    }

    [Fact]
    public async Task LatencyFollowsTheModel()
    {
        // Lone request: 20 + 40 × 0.5 + 20 × 4 = 120 ms. Four at once with BatchSlowdown 1 on 4 slots: steps cost up to
        // 8 ms, so ≈ 40 + 20 × 8 = 200 ms (the first steps are a little cheaper). A model that ignored prompt tokens (100 ms),
        // per-token time or the batch (120 ms for all four) would fail these ranges. The same prompt is sent again and
        // again, so the prefix cache is off here (PrefixCacheTests check what it saves).
        await using var sim = await Sims.StartAsync(("Slots", 4), ("PrefillMs", 20), ("PrefillPerTokenMs", 0.5), ("PerTokenMs", 4), ("BatchSlowdown", 1),
            ("PrefixCache:Enabled", false));
        using var client = Sims.Client(sim);
        var prompt = TokenCounter.BuildPrompt(40);
        await Sims.GenerateAsync(client, "warm-up", 1);
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Sims.GenerateAsync(client, "connections", 1)));

        var lone = new List<double>();
        for (var i = 0; i < 3; i++)
        {
            lone.Add(await Sims.TimeGenerateAsync(client, prompt, 20));
        }

        output.WriteLine($"lone: {string.Join(", ", lone)} ms");
        Assert.InRange(lone.Min(), 119, 150);
        Assert.Equal(120, sim.UnloadedLatency(40, 20).TotalMilliseconds, 6);

        var batch = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Sims.TimeGenerateAsync(client, prompt, 20)));
        output.WriteLine($"batch: {string.Join(", ", batch)} ms");
        Assert.InRange(batch.Min(), 188, 250);
        Assert.InRange(batch.Max(), 199, 280);
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

        var start = Stopwatch.GetTimestamp();
        var (response, body) = await Sims.PostAsync(client, "/v1/chat/completions", new { messages = new[] { new { role = "user", content = "c" } }, max_tokens = 1 });
        var elapsed = Stopwatch.GetElapsedTime(start).TotalMilliseconds;

        Assert.Equal(503, (int)response.StatusCode);
        Assert.True(elapsed < 500, $"A refusal must be immediate (took {elapsed} ms).");
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

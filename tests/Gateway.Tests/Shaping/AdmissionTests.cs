using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gateway.Shaping;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using TestSupport;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Shaping;

/// <summary>Admission control keeps the model server's queue short: priority, fairness, timeouts, overload refusals, circuit breaking.</summary>
[Collection(SerialTests.Name)]
public sealed class AdmissionTests
{
    private static JsonObject Admission(int maxInFlight, int queueLimit, string queueTimeout) => new()
    {
        ["Admission"] = new JsonObject
        {
            ["model-http"] = new JsonObject { ["MaxInFlight"] = maxInFlight, ["QueueLimit"] = queueLimit, ["QueueTimeout"] = queueTimeout },
        },
    };

    [Fact]
    public async Task Queue_serves_by_priority_then_gives_keys_turns_within_a_class()
    {
        var options = new GatewayHarness.Options { Edit = With(Admission(1, 20, "00:00:20")) };
        options.Sim["Sim:PerTokenMs"] = "40";
        await using var h = await GatewayHarness.StartAsync(options);
        var controller = h.Gateway.Services.GetRequiredService<ShapingRuntime>().Current.Clusters["model-http"].Controller;
        var order = new ConcurrentQueue<string>();

        Task Send(string name, string? priority, string key, int maxTokens = 3)
        {
            var client = new HttpClient { BaseAddress = h.Http };
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/generate") { Content = Generate(maxTokens: maxTokens) };
            if (priority is not null)
            {
                request.Headers.Add("x-priority", priority);
            }

            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
            return Task.Run(async () =>
            {
                using var response = await client.SendAsync(request);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                order.Enqueue(name);
                client.Dispose();
            });
        }

        // The first request holds the only slot for about 2 s, long enough to queue the others in a known order even on a busy machine.
        var tasks = new List<Task> { Send("hold", null, "k0", maxTokens: 50) };
        await Eventually.TrueAsync(() => controller.InFlight == 1, TimeSpan.FromSeconds(5), () => "hold not admitted");
        var queued = 0;
        foreach (var (name, priority, key) in new[]
        {
            ("low-1", "low", "a"), ("normal-a1", null, "a"), ("normal-a2", null, "a"), ("normal-a3", null, "a"),
            ("normal-b1", "normal", "b"), ("high-1", "high", "c"),
        })
        {
            tasks.Add(Send(name, priority, key));
            queued++;
            var expected = queued;
            await Eventually.TrueAsync(() => controller.Queued == expected, TimeSpan.FromSeconds(5), () => $"{name} not queued");
        }

        await Task.WhenAll(tasks);
        // Within the class the keys share by their virtual token counters (issue 13): a and b have been served nothing, and
        // on a tie the key with fewer waiting goes first (b), then they alternate; low is served last (aging is 10 s here).
        Assert.Equal(["hold", "high-1", "normal-b1", "normal-a1", "normal-a2", "normal-a3", "low-1"], order.ToArray());
    }

    [Fact]
    public async Task Queue_timeout_and_a_full_queue_answer_503_at_once_with_retry_after()
    {
        // Made robust for a loaded CI machine (load 20+ on 2 cores), where the thread pool can be hundreds of ms late: the
        // request that fills the queue is seen queued by the admission controller (a 50 ms sleep stood for that), the queue
        // timeout is 2 s (not 300 ms, which a starved refusal could outlast: the queue would have room again), and "at once"
        // is the order of the answers (the refusal before the queued request's time-out, while that one still waits), not
        // "under 200 ms". A full queue that made the request wait for room would still fail: the time-out comes first.
        var options = new GatewayHarness.Options { Edit = With(Admission(1, 1, "00:00:02")) };
        options.Sim["Sim:PerTokenMs"] = "200";
        await using var h = await GatewayHarness.StartAsync(options);
        var controller = h.Gateway.Services.GetRequiredService<ShapingRuntime>().Current.Clusters["model-http"].Controller;
        using var client = new HttpClient { BaseAddress = h.Http };

        var hold = client.PostAsync("/v1/generate", Generate(maxTokens: 20)); // 4 s in flight
        await Eventually.TrueAsync(() => h.Sim.Stats.Inflight == 1, TimeSpan.FromSeconds(5), () => "hold not running");
        var waiting = client.PostAsync("/v1/generate", Generate());
        await Eventually.TrueAsync(() => controller.Queued == 1, TimeSpan.FromSeconds(5), () => "the second request not queued");

        using var full = await client.PostAsync("/v1/generate", Generate());
        var refusedFirst = !waiting.IsCompleted;
        Assert.Equal(HttpStatusCode.ServiceUnavailable, full.StatusCode);
        Assert.True(refusedFirst, "a full queue answered only after the queued request had timed out");
        Assert.Equal("queue_full", JsonDocument.Parse(await full.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.NotNull(full.Headers.RetryAfter);
        Assert.Equal("admission:model-http", full.Headers.GetValues("x-gateway-limit").Single());

        using var timedOut = await waiting;
        Assert.Equal(HttpStatusCode.ServiceUnavailable, timedOut.StatusCode);
        Assert.Equal("queue_timeout", JsonDocument.Parse(await timedOut.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(HttpStatusCode.OK, (await hold).StatusCode);
        Assert.Equal(1, h.Sim.Stats.Requests); // only the admitted one reached the model server
    }

    [Fact]
    public async Task In_flight_cap_keeps_the_model_servers_queue_empty_under_a_burst()
    {
        var options = new GatewayHarness.Options { Edit = With(Admission(4, 100, "00:00:30")) };
        options.Sim["Sim:PerTokenMs"] = "5";
        options.Sim["Sim:Slots"] = "4";
        await using var h = await GatewayHarness.StartAsync(options);
        using var client = new HttpClient { BaseAddress = h.Http };

        var responses = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => client.PostAsync("/v1/generate", Generate(maxTokens: 10))));

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.Equal(0, h.Sim.Stats.QueueDepthMax); // the gateway queued; the "GPU" never did
        Assert.Equal(40, h.Sim.Stats.Completed);
    }

    [Fact]
    public async Task Circuit_breaker_opens_after_backend_failures_and_fails_fast()
    {
        var calls = 0;
        await using var backend = await TestBackend.StartAsync(app => app.MapPost("/v1/generate", () =>
        {
            Interlocked.Increment(ref calls);
            return Microsoft.AspNetCore.Http.Results.StatusCode(500);
        }));
        var shaping = WithBreaker(minimumThroughput: 5, sampling: "00:00:10", breakDuration: "00:00:30");
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { HttpBackend = backend.Address, Edit = With(shaping) });
        using var client = new HttpClient { BaseAddress = h.Http };

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 12; i++)
        {
            using var r = await client.PostAsync("/v1/generate", Generate());
            statuses.Add(r.StatusCode);
        }

        Assert.Equal(HttpStatusCode.InternalServerError, statuses[0]);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, statuses[^1]);
        Assert.InRange(calls, 5, 6); // once open, nothing more reaches the failing backend
        using var open = await client.PostAsync("/v1/generate", Generate());
        Assert.Equal("circuit_open", JsonDocument.Parse(await open.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    // Issue 16: /readyz answers 503 while a cluster's circuit is open, and says which cluster and why (before, it said
    // ready while every request was refused with circuit_open).
    [Fact]
    public async Task Readyz_is_503_naming_the_cluster_while_its_circuit_is_open()
    {
        await using var backend = await TestBackend.StartAsync(app => app.MapPost("/v1/generate", static () => Microsoft.AspNetCore.Http.Results.StatusCode(500)));
        var shaping = WithBreaker(minimumThroughput: 4, sampling: "00:00:10", breakDuration: "00:00:30");
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { HttpBackend = backend.Address, Edit = With(shaping) });
        using var client = new HttpClient { BaseAddress = h.Http };
        using var admin = new HttpClient { BaseAddress = h.Admin };

        await OpenCircuitAsync(client);
        await Eventually.TrueAsync(async () =>
        {
            using var ready = await admin.GetAsync("/readyz");
            var body = await ready.Content.ReadAsStringAsync();
            return ready.StatusCode == HttpStatusCode.ServiceUnavailable && body.Contains("circuit_open", StringComparison.Ordinal) && body.Contains("model-http", StringComparison.Ordinal);
        }, TimeSpan.FromSeconds(5), () => "readyz did not say the circuit of model-http is open");
    }

    [Fact]
    public async Task Circuit_breaker_lets_a_trial_through_after_the_break_and_closes_once_the_backend_recovers()
    {
        var failing = true;
        var calls = 0;
        await using var backend = await TestBackend.StartAsync(app => app.MapPost("/v1/generate", () =>
        {
            Interlocked.Increment(ref calls);
            return Volatile.Read(ref failing)
                ? Microsoft.AspNetCore.Http.Results.StatusCode(500)
                : Microsoft.AspNetCore.Http.Results.Json(new { text = "ok" });
        }));
        var shaping = WithBreaker(minimumThroughput: 4, sampling: "00:00:10", breakDuration: "00:00:01");
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { HttpBackend = backend.Address, Edit = With(shaping) });
        using var client = new HttpClient { BaseAddress = h.Http };

        Task<(HttpStatusCode Status, string? Code)> SendAsync() => SendGenerateAsync(client);

        // The backend fails until the circuit opens; then requests are refused without reaching it.
        await OpenCircuitAsync(client);
        var reached = Volatile.Read(ref calls);
        Assert.Equal((HttpStatusCode.ServiceUnavailable, "circuit_open"), await SendAsync());
        Assert.Equal(reached, Volatile.Read(ref calls));

        // After the break one trial reaches the still failing backend, and its failure opens the circuit again.
        var trial = await UntilAsync(SendAsync, r => r.Status != HttpStatusCode.ServiceUnavailable, TimeSpan.FromSeconds(10));
        Assert.Equal(HttpStatusCode.InternalServerError, trial.Status);
        Assert.Equal(reached + 1, Volatile.Read(ref calls));
        Assert.Equal((HttpStatusCode.ServiceUnavailable, "circuit_open"), await SendAsync());

        // The backend recovers: within a break or two a trial succeeds and closes the circuit; everything passes again.
        Volatile.Write(ref failing, false);
        var recovered = await UntilAsync(SendAsync, r => r.Status == HttpStatusCode.OK, TimeSpan.FromSeconds(10));
        Assert.Equal(HttpStatusCode.OK, recovered.Status);
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await SendAsync()).Status);
        }

        Assert.Equal("Closed", BreakerState(h));
    }

    [Fact]
    public async Task Circuit_breaker_judges_a_slow_streaming_trial_by_its_start_and_lets_others_through_while_it_streams()
    {
        var failing = true;
        var healthy = 0;
        var streamDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(app => app.MapPost("/v1/generate", async (HttpContext c) =>
        {
            if (Volatile.Read(ref failing))
            {
                c.Response.StatusCode = 500;
                return;
            }

            if (Interlocked.Increment(ref healthy) > 1)
            {
                await c.Response.WriteAsJsonAsync(new { text = "ok" });
                return;
            }

            // The first request after recovery: 200 at once, then the body dribbles for about 5 s.
            c.Response.ContentType = "text/event-stream";
            c.Response.Headers["x-slow"] = "1";
            await c.Response.StartAsync();
            await c.Response.Body.FlushAsync();
            for (var i = 0; i < 25; i++)
            {
                await c.Response.WriteAsync($"data: {i}\n\n");
                await c.Response.Body.FlushAsync();
                await Task.Delay(200);
            }

            await c.Response.WriteAsync("data: [DONE]\n\n");
            streamDone.TrySetResult();
        }));
        var shaping = WithBreaker(minimumThroughput: 4, sampling: "00:00:10", breakDuration: "00:00:01");
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { HttpBackend = backend.Address, Edit = With(shaping) });
        using var client = new HttpClient { BaseAddress = h.Http };

        Task<(HttpStatusCode Status, string? Code)> SendAsync() => SendGenerateAsync(client);

        await OpenCircuitAsync(client);
        Volatile.Write(ref failing, false);

        // After the break the first request through is the half-open trial: the slow stream, whose 200 comes at once.
        HttpResponseMessage? trial = null;
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (trial is null && DateTime.UtcNow < until)
        {
            var r = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/generate") { Content = Generate() }, HttpCompletionOption.ResponseHeadersRead);
            if (r.StatusCode == HttpStatusCode.ServiceUnavailable)
            {
                r.Dispose();
                await Task.Delay(50);
                continue;
            }

            trial = r;
        }

        Assert.NotNull(trial);
        using (trial)
        {
            Assert.Equal(HttpStatusCode.OK, trial.StatusCode);
            Assert.True(trial.Headers.Contains("x-slow"), "the trial was not the slow stream");
            var body = trial.Content.ReadAsStringAsync();

            // While the trial still streams, the circuit is closed: other requests pass at once instead of 503 circuit_open.
            // "At once" is that each is answered while the trial's 5 s stream still runs (not held until the trial ends);
            // a per-request "under 1 s" was here too, which a loaded CI machine (load 20+ on 2 cores) can exceed for any request.
            for (var i = 0; i < 5; i++)
            {
                var answer = await SendAsync();
                Assert.True(answer == (HttpStatusCode.OK, null), $"request {i} during the trial's stream: {(int)answer.Status} {answer.Code}");
                Assert.False(streamDone.Task.IsCompleted, $"the trial's stream ended before request {i} was answered");
            }

            Assert.Equal("Closed", BreakerState(h));
            Assert.EndsWith("data: [DONE]\n\n", await body.WaitAsync(TimeSpan.FromSeconds(20)), StringComparison.Ordinal); // the stream itself was not cut short
        }
    }

    [Fact]
    public async Task Non_ascii_header_value_is_answered_400_and_never_counts_against_the_backend()
    {
        var shaping = WithBreaker(minimumThroughput: 4, sampling: "00:00:30", breakDuration: "00:00:30");
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { Edit = With(shaping) });
        // A real client that sends the header's UTF-8 bytes as they are (HttpClient refuses non-ASCII values by default).
        using var client = new HttpClient(new SocketsHttpHandler { RequestHeaderEncodingSelector = (_, _) => System.Text.Encoding.UTF8 }) { BaseAddress = h.Http };

        for (var i = 0; i < 12; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/generate") { Content = Generate() };
            request.Headers.TryAddWithoutValidation("x-note", "café é");
            using var r = await client.SendAsync(request);
            var body = await r.Content.ReadAsStringAsync();
            Assert.True(r.StatusCode == HttpStatusCode.BadRequest, $"request {i}: {(int)r.StatusCode} {body}");
            var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
            Assert.Equal("invalid_header", error.GetProperty("code").GetString());
            Assert.Contains("'x-note'", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        Assert.Equal(0, h.Sim.Stats.Completed); // never forwarded
        using var ok = await client.PostAsync("/v1/generate", Generate());
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Equal("Closed", BreakerState(h));
    }

    /// <summary>Sends one request every 50 ms until one matches or time is up; returns the last answer.</summary>
    private static async Task<T> UntilAsync<T>(Func<Task<T>> send, Func<T, bool> done, TimeSpan within)
    {
        var until = DateTime.UtcNow + within;
        while (true)
        {
            var result = await send();
            if (done(result) || DateTime.UtcNow > until)
            {
                return result;
            }

            await Task.Delay(50);
        }
    }

    /// <summary>Admission on model-http (8 in flight, 8 queued, 5 s queue timeout) with a circuit breaker opening at a 50% failure ratio.</summary>
    private static JsonObject WithBreaker(int minimumThroughput, string sampling, string breakDuration)
    {
        var shaping = Admission(8, 8, "00:00:05");
        shaping["Admission"]!["model-http"]!["CircuitBreaker"] = new JsonObject
        {
            ["Enabled"] = true, ["FailureRatio"] = 0.5, ["MinimumThroughput"] = minimumThroughput, ["SamplingDuration"] = sampling, ["BreakDuration"] = breakDuration,
        };
        return shaping;
    }

    /// <summary>Sends one generate request: its status and the gateway's <c>x-gateway-error</c> code (null when none).</summary>
    private static async Task<(HttpStatusCode Status, string? Code)> SendGenerateAsync(HttpClient client)
    {
        using var r = await client.PostAsync("/v1/generate", Generate());
        var code = r.Headers.TryGetValues("x-gateway-error", out var v) ? v.First() : null;
        return (r.StatusCode, code);
    }

    /// <summary>Sends (to a failing backend) until the gateway answers 503 circuit_open, 20 requests at most.</summary>
    private static async Task OpenCircuitAsync(HttpClient client)
    {
        var opened = false;
        for (var i = 0; i < 20 && !opened; i++)
        {
            opened = await SendGenerateAsync(client) is (HttpStatusCode.ServiceUnavailable, "circuit_open");
        }

        Assert.True(opened, "the circuit never opened");
    }

    private static string? BreakerState(GatewayHarness h) =>
        h.Gateway.Services.GetRequiredService<ShapingRuntime>().Current.Clusters["model-http"].Breaker?.State.CircuitState.ToString();
}

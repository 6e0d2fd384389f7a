using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Gateway.Shaping;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Gateway.Shaping.Policies;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using TestSupport;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Shaping;

/// <summary>
/// Issue 12: Retry-After and x-ratelimit-reset are the time until enough permits free, not the whole window, locally
/// (on a FakeTimeProvider) as in Redis. Mirrors dotnet/runtime#92557 (FixedWindowRateLimiter reports the whole window as
/// RetryAfter) and symfony/symfony#40289 (a sliding window's retry-after is the window's end, not when a permit frees).
/// </summary>
[Collection(SerialTests.Name)]
public sealed class RetryAfterTests
{
    private static readonly PartitionKey s_global = PartitionKey.TryParse("Global", out var k, out _) ? k : null!;

    private static PolicyOptions Window(PolicyKind kind, int limit, TimeSpan window, int segments = 10, PolicyScope scope = PolicyScope.Local) =>
        new() { Kind = kind, PermitLimit = limit, Window = window, SegmentsPerWindow = segments, Partition = "Global", Scope = scope };

    [Fact]
    public async Task Fixed_window_10_per_60s_the_11th_request_at_50s_is_told_10s_not_60()
    {
        var time = new FakeTimeProvider();
        var policy = new LocalLimiterPolicy("fw", Window(PolicyKind.FixedWindow, 10, TimeSpan.FromSeconds(60)), s_global, time);
        for (var i = 0; i < 10; i++)
        {
            Assert.True((await policy.AcquireAsync("*", 1, default)).Admitted);
            time.Advance(TimeSpan.FromSeconds(1));
        }

        time.Advance(TimeSpan.FromSeconds(40)); // t = 50 s
        var refused = await policy.AcquireAsync("*", 1, default);

        Assert.False(refused.Admitted);
        Assert.InRange(refused.RetryAfter!.Value.TotalSeconds, 9, 11);
        Assert.Equal(0, refused.Info!.Value.Remaining);
        Assert.InRange(refused.Info.Value.Reset.TotalSeconds, 9, 11); // x-ratelimit-reset counts down the same way

        time.Advance(refused.RetryAfter.Value);
        Assert.True((await policy.AcquireAsync("*", 1, default)).Admitted); // and it was true
    }

    [Fact]
    public async Task Sliding_window_is_told_at_most_the_time_to_the_next_segment_when_the_oldest_holds_enough()
    {
        var time = new FakeTimeProvider();
        var policy = new LocalLimiterPolicy("sw", Window(PolicyKind.SlidingWindow, 10, TimeSpan.FromSeconds(60), segments: 6), s_global, time);
        for (var i = 0; i < 10; i++)
        {
            Assert.True((await policy.AcquireAsync("*", 1, default)).Admitted); // all in the first 10 s segment
        }

        time.Advance(TimeSpan.FromSeconds(53));
        var refused = await policy.AcquireAsync("*", 1, default);

        Assert.False(refused.Admitted);
        Assert.InRange(refused.RetryAfter!.Value.TotalSeconds, 6.5, 7.5); // the first segment leaves the window at 60 s
        Assert.True(refused.RetryAfter.Value <= TimeSpan.FromSeconds(10), "at most one segment");
        time.Advance(refused.RetryAfter.Value);
        Assert.True((await policy.AcquireAsync("*", 1, default)).Admitted);
    }

    [Fact]
    public async Task A_refund_gives_the_permit_back_to_the_window_it_came_from_and_never_to_a_later_one()
    {
        var time = new FakeTimeProvider();
        var policy = new LocalLimiterPolicy("fw", Window(PolicyKind.FixedWindow, 1, TimeSpan.FromSeconds(10)), s_global, time);
        var first = await policy.AcquireAsync("*", 1, default);
        await policy.RefundAsync(first.Charge!.Value, default);
        var second = await policy.AcquireAsync("*", 1, default);
        Assert.True(second.Admitted); // the refunded permit is free again

        time.Advance(TimeSpan.FromSeconds(11));
        var third = await policy.AcquireAsync("*", 1, default); // a new window
        Assert.True(third.Admitted);
        await policy.RefundAsync(second.Charge!.Value, default); // a refund for the old window: ignored
        Assert.False((await policy.AcquireAsync("*", 1, default)).Admitted);
    }

    [Fact]
    public async Task In_redis_a_fixed_window_is_told_the_time_left_and_a_sliding_window_when_its_estimate_frees_a_permit()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var connection = new ShapingRedis(redis.ConnectionString, TimeSpan.FromMilliseconds(250), TimeSpan.FromMilliseconds(500), TimeProvider.System, NullLogger.Instance);
        await Eventually.TrueAsync(() => !connection.FallingBack, TimeSpan.FromSeconds(10), () => "Redis did not connect");
        var local = new LocalLimiterPolicy("fw", Window(PolicyKind.FixedWindow, 5, TimeSpan.FromSeconds(10)), s_global, TimeProvider.System);
        var fixedWindow = new GlobalPolicy("fw", Window(PolicyKind.FixedWindow, 5, TimeSpan.FromSeconds(10), scope: PolicyScope.Global), s_global, connection, local);

        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        for (var i = 0; i < 5; i++)
        {
            Assert.True((await fixedWindow.AcquireAsync("p", 1, default)).Admitted);
        }

        await Task.Delay(TimeSpan.FromSeconds(3));
        var refused = await fixedWindow.AcquireAsync("p", 1, default);
        var left = TimeSpan.FromSeconds(10) - System.Diagnostics.Stopwatch.GetElapsedTime(start);
        Assert.False(refused.Admitted);
        Assert.False(connection.FallingBack);
        Assert.InRange(refused.RetryAfter!.Value.TotalSeconds, left.TotalSeconds - 0.5, left.TotalSeconds + 0.5); // ~7 s, not 10
        Assert.Equal(0, refused.Info!.Value.Remaining);
        Assert.InRange(refused.Info.Value.Reset.TotalSeconds, left.TotalSeconds - 0.5, left.TotalSeconds + 0.5);

        // Sliding (two-window estimate): a full previous window frees permits as it slides out, long before the window ends.
        var sliding = new GlobalPolicy("sw", Window(PolicyKind.SlidingWindow, 4, TimeSpan.FromSeconds(2), scope: PolicyScope.Global), s_global, connection, local);
        var admitted = 0;
        while (admitted < 4)
        {
            admitted += (await sliding.AcquireAsync("p", 1, default)).Admitted ? 1 : 0;
        }

        var swRefused = await sliding.AcquireAsync("p", 1, default);
        Assert.False(swRefused.Admitted);
        Assert.InRange(swRefused.RetryAfter!.Value.TotalSeconds, 0.001, 2.6);
        await Task.Delay(swRefused.RetryAfter.Value + TimeSpan.FromMilliseconds(30));
        Assert.True((await sliding.AcquireAsync("p", 1, default)).Admitted, "admitted once its Retry-After passed");
    }

    [Fact]
    public async Task A_forwarded_upstream_429_shows_the_tokens_given_back_not_the_stale_remaining_figure()
    {
        await using var backend = await TestBackend.StartAsync(app => app.MapPost("/v1/chat/completions", () => Results.Json(new { error = new { message = "slow down", code = "rate_limit_exceeded" } }, statusCode: 429)));
        var policies = Policies(("tpm", new JsonObject { ["Kind"] = "Tokens", ["Tokens"] = 1000, ["Partition"] = "Global" }));
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { HttpBackend = backend.Address, Edit = With(policies, openaiPolicies: "tpm") });
        using var client = new HttpClient { BaseAddress = h.Http };

        for (var i = 0; i < 3; i++)
        {
            using var r = await client.PostAsync("/v1/chat/completions", new StringContent("""{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":300}""", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.TooManyRequests, r.StatusCode);
            Assert.False(r.Headers.Contains("x-gateway-limit")); // the backend's own refusal, relayed
            Assert.Equal("1000", r.Headers.GetValues("x-ratelimit-remaining-tokens").Single()); // its ~300 reserved are given back
        }
    }

    [Fact]
    public async Task A_concurrency_policy_adds_no_rate_figures_and_a_rate_refusal_shows_remaining_0_counting_down()
    {
        var policies = Policies(
            ("one", new JsonObject { ["Kind"] = "Concurrency", ["PermitLimit"] = 1, ["Partition"] = "Global" }),
            ("fw", new JsonObject { ["Kind"] = "FixedWindow", ["PermitLimit"] = 2, ["Window"] = "00:00:30", ["Partition"] = "Global" }));
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { Edit = With(policies, openaiPolicies: "one,fw") });
        using var client = new HttpClient { BaseAddress = h.Http };

        using var first = await client.PostAsync("/v1/generate", Generate());
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal("2", first.Headers.GetValues("x-ratelimit-limit-requests").Single()); // the window's figures, not "limit 1, remaining 0, reset 0ms"
        Assert.Equal("1", first.Headers.GetValues("x-ratelimit-remaining-requests").Single());
        (await client.PostAsync("/v1/generate", Generate())).EnsureSuccessStatusCode();
        await Task.Delay(TimeSpan.FromSeconds(2));

        using var refused = await client.PostAsync("/v1/generate", Generate());
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal("0", refused.Headers.GetValues("x-ratelimit-remaining-requests").Single());
        var retry = refused.Headers.RetryAfter!.Delta!.Value.TotalSeconds;
        Assert.InRange(retry, 26, 29); // the time left in the window, not 30
        var reset = Contracts.Wire.GatewayDuration.TryParse(refused.Headers.GetValues("x-ratelimit-reset-requests").Single(), out var d) ? d : TimeSpan.MaxValue;
        Assert.InRange(reset.TotalSeconds, 25, 29);
    }
}

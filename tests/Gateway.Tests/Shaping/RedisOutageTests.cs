using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gateway.Shaping;
using Microsoft.Extensions.DependencyInjection;
using TestSupport;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Shaping;

/// <summary>
/// Issue 12, "Redis that is slow, frozen or gone": a fleet-wide decision never waits longer than
/// <c>Gateway:Shaping:RedisTimeout</c> (250 ms); past it the policy's FailMode applies and Redis is not asked again until
/// a probe finds it answering. Mirrors envoyproxy/ratelimit#462 ("response time is too long when Redis is DOWN": every
/// request waited for the Redis client's timeout) and envoyproxy/ratelimit#978 (skip Redis after timeouts, retry
/// periodically). Redis is frozen for real (SIGSTOP): its connections stay open and nothing answers.
/// </summary>
[Collection(SerialTests.Name)]
public sealed class RedisOutageTests
{
    private static GatewayHarness.Options Fleet(RedisServer redis, string failMode) => new()
    {
        Edit = With(new JsonObject
        {
            ["Redis"] = redis.ConnectionString,
            ["Policies"] = new JsonObject
            {
                ["fleet"] = new JsonObject { ["Kind"] = "FixedWindow", ["PermitLimit"] = 5, ["Window"] = "00:05:00", ["Partition"] = "Global", ["Scope"] = "Global", ["FailMode"] = failMode },
            },
        }, openaiPolicies: "fleet"),
    };

    [Fact]
    public async Task Frozen_redis_costs_no_request_more_than_the_budget_fails_open_and_enforcement_resumes_after_SIGCONT()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var h = await GatewayHarness.StartAsync(Fleet(redis, "Open"));
        using var client = new HttpClient { BaseAddress = h.Http };
        var runtime = h.Gateway.Services.GetRequiredService<ShapingRuntime>();

        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/v1/generate", Generate())).StatusCode);
        }

        Assert.Equal(HttpStatusCode.TooManyRequests, (await client.PostAsync("/v1/generate", Generate())).StatusCode);

        await redis.PauseAsync();
        var (statuses, max) = await TimedAsync(client, sequential: 12, parallel: 12);
        Assert.True(max < TimeSpan.FromMilliseconds(600), $"slowest request while Redis was frozen took {max.TotalMilliseconds:0} ms (budget 250 ms)");
        Assert.All(statuses, s => Assert.Equal(HttpStatusCode.OK, s)); // FailMode Open admits
        Assert.True(runtime.Redis.FallingBack);

        var warnings = h.Logs.Entries.Where(e => e.EventId.Id == 4101).ToList();
        var warning = Assert.Single(warnings); // one line per change, not one per request
        Assert.DoesNotContain('\n', warning.Message);
        Assert.True(warning.Message.Length < 300, $"the warning is {warning.Message.Length} characters: {warning.Message}");
        Assert.Contains("no answer within 250 ms", warning.Message, StringComparison.Ordinal);
        Assert.Null(warning.Exception);

        await redis.ResumeAsync();
        // The probe (every 500 ms) finds Redis answering; the window still holds its 5 of 5: refused again.
        await Eventually.TrueAsync(async () =>
        {
            using var r = await client.PostAsync("/v1/generate", Generate());
            return r.StatusCode == HttpStatusCode.TooManyRequests;
        }, TimeSpan.FromSeconds(10), () => "fleet-wide enforcement did not resume after SIGCONT");
        Assert.False(runtime.Redis.FallingBack);
        Assert.Contains(h.Logs.Entries, e => e.EventId.Id == 4102);
    }

    [Fact]
    public async Task Frozen_redis_in_closed_mode_refuses_within_the_budget_saying_redis_is_unavailable()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var h = await GatewayHarness.StartAsync(Fleet(redis, "Closed"));
        using var client = new HttpClient { BaseAddress = h.Http };
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/v1/generate", Generate())).StatusCode);

        await redis.PauseAsync();
        var (statuses, max) = await TimedAsync(client, sequential: 8, parallel: 8);
        Assert.True(max < TimeSpan.FromMilliseconds(600), $"slowest request while Redis was frozen took {max.TotalMilliseconds:0} ms (budget 250 ms)");
        Assert.All(statuses, s => Assert.Equal(HttpStatusCode.ServiceUnavailable, s));

        using var refused = await client.PostAsync("/v1/generate", Generate());
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        using var body = JsonDocument.Parse(await refused.Content.ReadAsStringAsync());
        var error = body.RootElement.GetProperty("error");
        Assert.Equal("redis_unavailable", error.GetProperty("code").GetString());
        Assert.Contains("Redis is unavailable", error.GetProperty("message").GetString(), StringComparison.Ordinal);

        await redis.ResumeAsync();
        await Eventually.TrueAsync(async () =>
        {
            using var r = await client.PostAsync("/v1/generate", Generate());
            return r.StatusCode == HttpStatusCode.OK;
        }, TimeSpan.FromSeconds(10), () => "admissions did not resume after SIGCONT");
    }

    [Fact]
    public void A_redis_failure_is_named_in_a_few_words()
    {
        var dump = "Timeout awaiting response (outbound=1KiB, inbound=0KiB, 1204ms elapsed, timeout is 250ms), command=EVAL, next: EVAL, inst: 0, qu: 0, qs: 2, aw: False, bw: SpinningDown, rs: ReadAsync, ws: Idle, in: 0, in-pipe: 0, out-pipe: 0, last-in: 0, cur-in: 0, sync-ops: 0, async-ops: 12, serverEndpoint: 127.0.0.1:6379, conn-sec: 3.2, aoc: 0, mc: 1/1/0, mgr: 10 of 10 available, clientName: gw, IOCP: (Busy=0,Free=1000,Min=1,Max=1000), WORKER: (Busy=1,Free=32766,Min=2,Max=32767), POOL: (Threads=6,QueuedItems=0,CompletedItems=311,Timers=4), v: 3.4.35 (Please take a look at this article for some common client-side issues that can cause timeouts: https://stackexchange.github.io/StackExchange.Redis/Timeouts)";
#pragma warning disable CS0618 // the constructors StackExchange.Redis itself uses; the newer overloads add flags this test does not need
        Assert.Equal("timeout", Gateway.Shaping.Policies.ShapingRedis.Cause(new StackExchange.Redis.RedisTimeoutException(dump, StackExchange.Redis.CommandStatus.Sent)));
        Assert.Equal("connection SocketFailure", Gateway.Shaping.Policies.ShapingRedis.Cause(new StackExchange.Redis.RedisConnectionException(StackExchange.Redis.ConnectionFailureType.SocketFailure, dump)));
        Assert.Equal("Timeout awaiting response (outbound=1KiB, inbound=0KiB, 1204ms elapsed, timeout is 250ms), command=EVAL",
            Gateway.Shaping.Policies.ShapingRedis.Cause(new StackExchange.Redis.RedisException(dump)));
        Assert.Equal("NOSCRIPT No matching script", Gateway.Shaping.Policies.ShapingRedis.Cause(new StackExchange.Redis.RedisServerException("NOSCRIPT No matching script\nmore")));
#pragma warning restore CS0618
    }

    /// <summary>Sends requests one by one, then in parallel; returns their statuses and the slowest one's latency.</summary>
    private static async Task<(List<HttpStatusCode> Statuses, TimeSpan Max)> TimedAsync(HttpClient client, int sequential, int parallel)
    {
        var statuses = new List<HttpStatusCode>();
        var max = TimeSpan.Zero;
        for (var i = 0; i < sequential; i++)
        {
            var (status, took) = await OneAsync(client);
            statuses.Add(status);
            max = took > max ? took : max;
        }

        foreach (var (status, took) in await Task.WhenAll(Enumerable.Range(0, parallel).Select(_ => OneAsync(client))))
        {
            statuses.Add(status);
            max = took > max ? took : max;
        }

        return (statuses, max);

        static async Task<(HttpStatusCode, TimeSpan)> OneAsync(HttpClient client)
        {
            var start = Stopwatch.GetTimestamp();
            using var response = await client.PostAsync("/v1/generate", Generate());
            await response.Content.ReadAsByteArrayAsync();
            return (response.StatusCode, Stopwatch.GetElapsedTime(start));
        }
    }
}

using System.Net;
using System.Text.Json.Nodes;
using Gateway.Shaping;
using Gateway.Shaping.Policies;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;
using TestSupport;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Shaping;

/// <summary>
/// Issue 12, "Partitions that go away": idle local partitions are forgotten (20,000 distinct keys over a minute grew a
/// gateway by 90 MB that never came back), their count and a policy's queue are metrics, a forwarding header is not a
/// client address, and every Redis key the limiters create has a TTL.
/// </summary>
[Collection(SerialTests.Name)]
public sealed class PartitionTests
{
    private static readonly PartitionKey s_key = PartitionKey.TryParse("ApiKey", out var k, out _) ? k : null!;

    [Theory]
    [InlineData("FixedWindow")]
    [InlineData("SlidingWindow")]
    [InlineData("TokenBucket")]
    [InlineData("Tokens")]
    public async Task Idle_local_partitions_are_forgotten_and_a_busy_one_is_kept(string kindName)
    {
        var kind = Enum.Parse<PolicyKind>(kindName);
        var time = new FakeTimeProvider();
        var options = new PolicyOptions
        {
            Kind = kind, PermitLimit = 5, Window = TimeSpan.FromSeconds(10), TokenLimit = 5, TokensPerPeriod = 1, ReplenishmentPeriod = TimeSpan.FromSeconds(2),
            Tokens = 1000, Partition = "ApiKey",
        };
        ShapingPolicy policy = kind == PolicyKind.Tokens ? new LocalTokenPolicy("p", options, s_key, time) : new LocalLimiterPolicy("p", options, s_key, time);
        for (var i = 0; i < 2000; i++)
        {
            Assert.True((await policy.AcquireAsync($"key:{i}", 1, default)).Admitted);
        }

        Assert.Equal(2000, policy.Partitions);
        time.Advance(TimeSpan.FromSeconds(61)); // every window ended, every bucket full again
        Assert.True((await policy.AcquireAsync("busy", 1, default)).Admitted);
        policy.EvictIdle();
        Assert.Equal(1, policy.Partitions); // only the one charged just now

        time.Advance(TimeSpan.FromSeconds(61));
        policy.EvictIdle(); // as ShapingRuntime's timer does, with no request at all
        Assert.Equal(0, policy.Partitions);
        Assert.True((await policy.AcquireAsync("key:1", 1, default)).Admitted); // a forgotten partition starts afresh
    }

    [Fact]
    public async Task A_concurrency_policy_counts_partitions_with_leases_and_its_queue_and_both_are_metrics()
    {
        var options = new GatewayHarness.Options
        {
            Edit = With(Policies(("inflight", new JsonObject { ["Kind"] = "Concurrency", ["PermitLimit"] = 1, ["QueueLimit"] = 5, ["Partition"] = "Global" })), openaiPolicies: "inflight"),
        };
        options.Sim["Sim:PerTokenMs"] = "40";
        await using var h = await GatewayHarness.StartAsync(options);
        var policy = h.Gateway.Services.GetRequiredService<ShapingRuntime>().Current.Policies["inflight"];
        using var client = new HttpClient { BaseAddress = h.Http };
        using var admin = new HttpClient { BaseAddress = h.Admin };

        var requests = new List<Task<HttpResponseMessage>> { client.PostAsync("/v1/generate", Generate(maxTokens: 50)) };
        await Eventually.TrueAsync(() => policy.Partitions == 1, TimeSpan.FromSeconds(10), () => "the first request did not take the permit");
        requests.Add(client.PostAsync("/v1/generate", Generate()));
        requests.Add(client.PostAsync("/v1/generate", Generate()));
        await Eventually.TrueAsync(() => policy.Queued == 2, TimeSpan.FromSeconds(10), () => $"queued {policy.Queued}, expected 2");

        var metrics = (await admin.GetStringAsync("/metrics")).Split('\n');
        Assert.Contains(metrics, l => l.StartsWith("gateway_shaping_queue_depth", StringComparison.Ordinal) && l.Contains("policy=\"inflight\"", StringComparison.Ordinal) && l.EndsWith(" 2", StringComparison.Ordinal));
        Assert.Contains(metrics, l => l.StartsWith("gateway_shaping_partitions", StringComparison.Ordinal) && l.Contains("policy=\"inflight\"", StringComparison.Ordinal) && l.EndsWith(" 1", StringComparison.Ordinal));

        foreach (var response in await Task.WhenAll(requests))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            response.Dispose();
        }

        await Eventually.TrueAsync(() => policy.Partitions == 0 && policy.Queued == 0, TimeSpan.FromSeconds(5), () => $"partitions {policy.Partitions}, queued {policy.Queued} after every exchange ended");
    }

    [Fact]
    public async Task A_forwarding_header_is_not_a_client_address_without_a_trusted_proxy()
    {
        // The gateway configures no trusted proxies (no forwarded-headers middleware): ClientAddress, and ApiKey without
        // a key, are the TCP peer's address, whatever X-Forwarded-For or Forwarded claim.
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options
        {
            Edit = With(Policies(
                ("per-ip", new JsonObject { ["Kind"] = "FixedWindow", ["PermitLimit"] = 2, ["Window"] = "00:01:00", ["Partition"] = "ClientAddress" })), openaiPolicies: "per-ip"),
        });
        using var client = new HttpClient { BaseAddress = h.Http };
        var statuses = new List<HttpStatusCode>();
        foreach (var (header, value) in new[] { ("X-Forwarded-For", "203.0.113.1"), ("X-Forwarded-For", "203.0.113.2"), ("Forwarded", "for=203.0.113.3") })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/generate") { Content = Generate() };
            request.Headers.TryAddWithoutValidation(header, value);
            using var response = await client.SendAsync(request);
            statuses.Add(response.StatusCode);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
    }

    [Fact]
    public async Task Every_redis_key_the_limiters_create_has_a_ttl()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var connection = new ShapingRedis(redis.ConnectionString, TimeSpan.FromMilliseconds(250), TimeSpan.FromMilliseconds(500), TimeProvider.System, NullLogger.Instance);
        var global = PartitionKey.TryParse("Global", out var g, out _) ? g : null!;
        PolicyOptions Of(PolicyKind kind) => new()
        {
            Kind = kind, Scope = PolicyScope.Global, Partition = "Global", PermitLimit = 3, Window = TimeSpan.FromSeconds(30), TokenLimit = 3, TokensPerPeriod = 1,
            ReplenishmentPeriod = TimeSpan.FromSeconds(5), Tokens = 1000, LeaseTtl = TimeSpan.FromSeconds(30),
        };

        foreach (var kind in new[] { PolicyKind.FixedWindow, PolicyKind.SlidingWindow, PolicyKind.TokenBucket, PolicyKind.Tokens, PolicyKind.Concurrency })
        {
            var o = Of(kind);
            ShapingPolicy local = kind == PolicyKind.Tokens ? new LocalTokenPolicy(kind.ToString(), o, global, TimeProvider.System) : new LocalLimiterPolicy(kind.ToString(), o, global, TimeProvider.System);
            ShapingPolicy policy = kind == PolicyKind.Concurrency
                ? new GlobalConcurrencyPolicy(kind.ToString(), o, global, connection, local, TimeProvider.System)
                : new GlobalPolicy(kind.ToString(), o, global, connection, local);
            for (var i = 0; i < 4; i++)
            {
                var decision = await policy.AcquireAsync("p" + (i % 2), kind == PolicyKind.Tokens ? 100 : 1, default);
                if (decision.Charge is { } charge)
                {
                    await policy.RefundAsync(charge, default); // refunds write too
                }
            }

            await policy.AdjustAsync("p0", 50, default); // token debt
            _ = await policy.AcquireAsync("p1", 1, default); // a concurrency lease is kept: its set must expire by itself
        }

        Assert.False(connection.FallingBack);
        await using var mux = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var server = mux.GetServer(mux.GetEndPoints()[0]);
        var keys = server.Keys(pattern: "*").ToList();
        Assert.NotEmpty(keys);
        foreach (var key in keys)
        {
            var ttl = await mux.GetDatabase().KeyTimeToLiveAsync(key);
            Assert.True(ttl is { } t && t > TimeSpan.Zero, $"{key} has no TTL");
        }

        Assert.Contains(keys, k => ((string)k!).StartsWith("rl:{FixedWindow}", StringComparison.Ordinal));
        Assert.Contains(keys, k => ((string)k!).StartsWith("rl:{SlidingWindow}", StringComparison.Ordinal));
        Assert.Contains(keys, k => ((string)k!).StartsWith("rl:{Tokens}", StringComparison.Ordinal));
        Assert.Contains(keys, k => ((string)k!).StartsWith("cl:{Concurrency}", StringComparison.Ordinal));
    }
}

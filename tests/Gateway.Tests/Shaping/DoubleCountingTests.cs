using System.Net;
using System.Text.Json.Nodes;
using TestSupport;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Shaping;

/// <summary>
/// Issue 12: a request refused by a later policy, by admission or by the circuit breaker takes nothing from the earlier
/// policies. Mirrors envoyproxy/ratelimit#1060 (a request over one limit still charged the broader one) and
/// envoyproxy/envoy#22163 (successive rate-limit filters lower the effective rate).
/// </summary>
[Collection(SerialTests.Name)]
public sealed class DoubleCountingTests
{
    private static JsonObject OuterAndInner(string? redis)
    {
        var scope = redis is null ? "Local" : "Global";
        var shaping = Policies(
            ("outer", new JsonObject { ["Kind"] = "FixedWindow", ["PermitLimit"] = 3, ["Window"] = "00:01:00", ["Partition"] = "Global", ["Scope"] = scope }),
            ("inner", new JsonObject { ["Kind"] = "TokenBucket", ["TokenLimit"] = 1, ["TokensPerPeriod"] = 1, ["ReplenishmentPeriod"] = "00:00:10", ["Partition"] = "Global", ["Scope"] = scope }));
        if (redis is not null)
        {
            shaping["Redis"] = redis;
        }

        return shaping;
    }

    private static async Task OuterWindowIsNotChargedByInnerRefusalsAsync(GatewayHarness h)
    {
        using var client = new HttpClient { BaseAddress = h.Http };
        var burst = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => client.PostAsync("/v1/generate", Generate())));
        Assert.Equal(1, burst.Count(r => r.StatusCode == HttpStatusCode.OK));
        Assert.All(burst.Where(r => r.StatusCode != HttpStatusCode.OK), r =>
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, r.StatusCode);
            Assert.Equal("inner", r.Headers.GetValues("x-gateway-limit").Single());
            Assert.Equal("0", r.Headers.GetValues("x-ratelimit-remaining-requests").Single()); // refusals carry the headers too
        });

        for (var i = 0; i < 2; i++)
        {
            await Task.Delay(TimeSpan.FromSeconds(10.5));
            using var later = await client.PostAsync("/v1/generate", Generate());
            // Without refunds the outer window (3 a minute) has counted the two refused ones and refuses this.
            Assert.True(later.StatusCode == HttpStatusCode.OK, $"request {i + 2} 10.5 s later: {(int)later.StatusCode} from {string.Join(",", later.Headers.TryGetValues("x-gateway-limit", out var l) ? l : [])}");
        }
    }

    [Fact]
    public async Task Refused_by_the_inner_policy_takes_nothing_from_the_outer_one_locally_and_fleet_wide()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var local = await GatewayHarness.StartAsync(new GatewayHarness.Options { Edit = With(OuterAndInner(null), openaiPolicies: "outer,inner") });
        await using var global = await GatewayHarness.StartAsync(new GatewayHarness.Options { Edit = With(OuterAndInner(redis.ConnectionString), openaiPolicies: "outer,inner") });

        await Task.WhenAll(OuterWindowIsNotChargedByInnerRefusalsAsync(local), OuterWindowIsNotChargedByInnerRefusalsAsync(global));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Refused_by_admission_takes_nothing_from_the_rate_limits(bool global)
    {
        await using var redis = global ? await RedisServer.StartAsync() : null;
        var shaping = Policies(("two", new JsonObject { ["Kind"] = "FixedWindow", ["PermitLimit"] = 2, ["Window"] = "00:01:00", ["Partition"] = "Global", ["Scope"] = global ? "Global" : "Local" }));
        shaping["Admission"] = new JsonObject { ["model-http"] = new JsonObject { ["MaxInFlight"] = 1, ["QueueLimit"] = 0 } };
        if (redis is not null)
        {
            shaping["Redis"] = redis.ConnectionString;
        }

        var options = new GatewayHarness.Options { Edit = With(shaping, openaiPolicies: "two") };
        options.Sim["Sim:PerTokenMs"] = "50";
        await using var h = await GatewayHarness.StartAsync(options);
        using var client = new HttpClient { BaseAddress = h.Http };

        var slow = client.PostAsync("/v1/generate", Generate(maxTokens: 30)); // holds the one slot about 1.5 s
        await Eventually.TrueAsync(() => h.Sim.Stats.Requests == 1, TimeSpan.FromSeconds(5), () => "the first request did not reach the model");
        for (var i = 0; i < 3; i++)
        {
            using var refused = await client.PostAsync("/v1/generate", Generate());
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.Equal("admission:model-http", refused.Headers.GetValues("x-gateway-limit").Single());
            Assert.Equal("1", refused.Headers.GetValues("x-ratelimit-remaining-requests").Single()); // its permit was given back
        }

        Assert.Equal(HttpStatusCode.OK, (await slow).StatusCode);
        using var next = await client.PostAsync("/v1/generate", Generate());
        Assert.Equal(HttpStatusCode.OK, next.StatusCode); // the window of 2 counted the first and this one only
        using var third = await client.PostAsync("/v1/generate", Generate());
        Assert.Equal(HttpStatusCode.TooManyRequests, third.StatusCode);
        Assert.InRange(third.Headers.RetryAfter!.Delta!.Value.TotalSeconds, 50, 60);
    }
}

using System.Net;
using System.Text.Json.Nodes;
using Gateway.Shaping;
using Microsoft.Extensions.DependencyInjection;
using TestSupport;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Shaping;

/// <summary>Fleet-wide limits: gateways sharing a real Redis admit the configured rate together, and survive Redis going away.</summary>
[Collection(SerialTests.Name)]
public sealed class GlobalLimitTests
{
    private static GatewayHarness.Options Fleet(RedisServer redis, int instances) => new()
    {
        Edit = With(new JsonObject
        {
            ["Redis"] = redis.ConnectionString,
            ["Instances"] = instances,
            ["Policies"] = new JsonObject
            {
                ["fleet"] = new JsonObject { ["Kind"] = "FixedWindow", ["PermitLimit"] = 20, ["Window"] = "00:00:01", ["Partition"] = "Global", ["Scope"] = "Global" },
            },
        }, openaiPolicies: "fleet"),
    };

    [Fact]
    public async Task Two_gateways_sharing_redis_admit_the_global_rate_together()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var a = await GatewayHarness.StartAsync(Fleet(redis, 2));
        await using var b = await GatewayHarness.StartAsync(Fleet(redis, 2));
        using var ca = new HttpClient { BaseAddress = a.Http };
        using var cb = new HttpClient { BaseAddress = b.Http };

        var results = await Task.WhenAll(HammerAsync(ca, TimeSpan.FromSeconds(3)), HammerAsync(cb, TimeSpan.FromSeconds(3)));

        var admitted = results.Sum(r => r.GetValueOrDefault(HttpStatusCode.OK));
        // 20 per second for the fleet: about 60 in 3 s (window edges allow up to one more window). Two gateways each
        // enforcing 20 alone would admit about 120.
        Assert.InRange(admitted, 55, 82);
        Assert.True(results[0].GetValueOrDefault(HttpStatusCode.OK) > 5 && results[1].GetValueOrDefault(HttpStatusCode.OK) > 5, "both gateways admit a share");
        Assert.All(results, r => Assert.Equal(r.Values.Sum(), r.GetValueOrDefault(HttpStatusCode.OK) + r.GetValueOrDefault(HttpStatusCode.TooManyRequests)));
    }

    [Fact]
    public async Task Redis_killed_and_restarted_the_policy_falls_back_to_its_local_share_and_recovers()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var a = await GatewayHarness.StartAsync(Fleet(redis, 2));
        using var client = new HttpClient { BaseAddress = a.Http };
        var runtime = a.Gateway.Services.GetRequiredService<ShapingRuntime>();

        var before = await HammerAsync(client, TimeSpan.FromSeconds(2));
        Assert.False(runtime.Redis.FallingBack);
        Assert.InRange(before.GetValueOrDefault(HttpStatusCode.OK), 30, 62);

        await redis.StopAsync();
        var during = await HammerAsync(client, TimeSpan.FromSeconds(3));
        Assert.True(runtime.Redis.FallingBack);
        // Local share: 20 / 2 instances = 10 per second, enforced here; nothing but 200 and 429.
        Assert.InRange(during.GetValueOrDefault(HttpStatusCode.OK), 20, 42);
        Assert.Equal(during.Values.Sum(), during.GetValueOrDefault(HttpStatusCode.OK) + during.GetValueOrDefault(HttpStatusCode.TooManyRequests));

        var warning = Assert.Single(a.Logs.Entries, e => e.EventId.Id == 4101); // issue 12: one short line, not StackExchange.Redis's dump
        Assert.DoesNotContain('\n', warning.Message);
        Assert.True(warning.Message.Length < 300, warning.Message);

        using var admin = new HttpClient { BaseAddress = a.Admin };
        Assert.Contains((await admin.GetStringAsync("/metrics")).Split('\n'), l => l.StartsWith("gateway_shaping_redis_fallback", StringComparison.Ordinal) && l.EndsWith(" 1", StringComparison.Ordinal));

        await redis.RestartAsync();
        await Eventually.TrueAsync(async () =>
        {
            using var r = await client.PostAsync("/v1/generate", Generate());
            return !runtime.Redis.FallingBack;
        }, TimeSpan.FromSeconds(15), () => "global enforcement did not resume after Redis came back");
        var after = await HammerAsync(client, TimeSpan.FromSeconds(2));
        Assert.InRange(after.GetValueOrDefault(HttpStatusCode.OK), 30, 62); // the fleet limit again, not the local share
        Assert.Equal(after.Values.Sum(), after.GetValueOrDefault(HttpStatusCode.OK) + after.GetValueOrDefault(HttpStatusCode.TooManyRequests));
    }
}

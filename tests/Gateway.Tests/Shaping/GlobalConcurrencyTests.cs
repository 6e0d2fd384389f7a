using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gateway.Shaping;
using Gateway.Shaping.Policies;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;
using TestSupport;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Shaping;

/// <summary>
/// Issue 12, "Fleet-wide concurrency": <c>Kind: Concurrency, Scope: Global</c> holds at most PermitLimit exchanges in
/// flight across every gateway sharing the Redis, as leases with a TTL that the holder renews while the exchange lives;
/// a gateway killed with SIGKILL blocks nobody for longer than <c>LeaseTtl</c>. Mirrors
/// cristipufu/aspnetcore-redis-rate-limiting#2 ("if a client crashes while holding onto a token then that token will
/// never be returned") and redisson/redisson#4462 (a killed process locks up a Redis semaphore). Tested with a real
/// redis-server, two gateways, and one real gateway process killed with SIGKILL.
/// </summary>
[Collection(SerialTests.Name)]
public sealed class GlobalConcurrencyTests
{
    private static GatewayHarness.Options Fleet(RedisServer redis, string leaseTtl)
    {
        var options = new GatewayHarness.Options
        {
            Edit = With(new JsonObject
            {
                ["Redis"] = redis.ConnectionString,
                ["Instances"] = 2,
                ["Policies"] = new JsonObject
                {
                    ["inflight"] = new JsonObject { ["Kind"] = "Concurrency", ["PermitLimit"] = 2, ["Partition"] = "Global", ["Scope"] = "Global", ["LeaseTtl"] = leaseTtl },
                },
            }, openaiPolicies: "inflight"),
        };
        options.Sim["Sim:PerTokenMs"] = "40";
        options.Sim["Sim:Slots"] = "8";
        return options;
    }

    [Fact]
    public async Task Two_gateways_share_the_in_flight_cap_leases_outlive_their_ttl_while_renewed_and_are_released_at_the_end()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var a = await GatewayHarness.StartAsync(Fleet(redis, "00:00:02"));
        await using var b = await GatewayHarness.StartAsync(Fleet(redis, "00:00:02"));
        using var ca = new HttpClient { BaseAddress = a.Http };
        using var cb = new HttpClient { BaseAddress = b.Http };
        var pa = (GlobalConcurrencyPolicy)a.Gateway.Services.GetRequiredService<ShapingRuntime>().Current.Policies["inflight"];
        var pb = (GlobalConcurrencyPolicy)b.Gateway.Services.GetRequiredService<ShapingRuntime>().Current.Policies["inflight"];

        // One slow stream through each gateway (150 tokens × 40 ms: about 6 s): the fleet's 2 leases.
        var streamA = StreamAsync(ca, 150);
        var streamB = StreamAsync(cb, 150);
        await Eventually.TrueAsync(() => pa.LiveLeases == 1 && pb.LiveLeases == 1, TimeSpan.FromSeconds(10), () => "streams not admitted");

        // Past the 2 s TTL the leases still hold (renewed every 667 ms): both gateways refuse a third exchange.
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.False(streamA.IsCompleted || streamB.IsCompleted, "a stream ended before the check");
        foreach (var client in new[] { ca, cb })
        {
            using var refused = await client.PostAsync("/v1/generate", Generate());
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            using var body = JsonDocument.Parse(await refused.Content.ReadAsStringAsync());
            Assert.Equal("concurrency", body.RootElement.GetProperty("error").GetProperty("code").GetString());
        }

        Assert.All(await Task.WhenAll(streamA, streamB), s => Assert.Equal(HttpStatusCode.OK, s));

        // Released when the exchanges end: admitted again, the set is empty and has a TTL while it exists.
        Assert.Equal(HttpStatusCode.OK, (await ca.PostAsync("/v1/generate", Generate())).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await cb.PostAsync("/v1/generate", Generate())).StatusCode);
        await using var mux = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        await Eventually.TrueAsync(async () => await mux.GetDatabase().SortedSetLengthAsync("cl:{inflight}:*") == 0, TimeSpan.FromSeconds(5), () => "leases not released");
        Assert.Equal(0, pa.LiveLeases + pb.LiveLeases);
    }

    [Fact]
    public async Task A_gateway_killed_with_SIGKILL_holding_every_lease_blocks_the_other_no_longer_than_the_lease_ttl()
    {
        await using var redis = await RedisServer.StartAsync();
        var options = Fleet(redis, "00:00:06");
        await using var survivor = await GatewayHarness.StartAsync(options);
        using var cs = new HttpClient { BaseAddress = survivor.Http };

        // The victim: the gateway's own executable, same configuration, same backend, killed for real.
        var dir = Directory.CreateTempSubdirectory("gw-kill9-");
        try
        {
            var config = Path.Combine(dir.FullName, "gateway.json");
            await File.WriteAllTextAsync(config, GatewayHarness.BuildConfig(Fleet(redis, "00:00:06"), survivor.Sim.HttpAddress, survivor.Sim.GrpcAddress).ToJsonString());
            var port = FreePort.Next();
            var adminPort = FreePort.Next();
            await using var victim = ChildProcess.Start("dotnet",
                [typeof(Gateway.Hosting.GatewayServer).Assembly.Location, "--config", config, $"--Gateway:Listeners:Http:Port={port}", "--Gateway:Listeners:Grpc:Port=0",
                    "--Gateway:Listeners:WebSocket:Port=0", "--Gateway:Listeners:Https:Port=0", $"--Gateway:Listeners:Admin:Port={adminPort}"],
                workingDirectory: dir.FullName);
            using var cv = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            await Eventually.TrueAsync(async () =>
            {
                try
                {
                    using var r = await cv.PostAsync("/v1/generate", Generate());
                    return r.StatusCode == HttpStatusCode.OK;
                }
                catch (HttpRequestException)
                {
                    Assert.False(victim.HasExited, $"the gateway process exited: {victim.StandardError}");
                    return false;
                }
            }, TimeSpan.FromSeconds(60), () => $"the gateway process did not answer: {victim.StandardError}");

            // A cold process may miss the 250 ms Redis budget on its first scripts (and fall back until the probe answers):
            // warm it up, then wait until it enforces through Redis.
            for (var i = 0; i < 10; i++)
            {
                using var warm = await cv.PostAsync("/v1/generate", Generate());
            }

            using var victimAdmin = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{adminPort}") };
            await Eventually.TrueAsync(async () => (await victimAdmin.GetStringAsync("/metrics")).Split('\n').Any(l => l.StartsWith("gateway_shaping_redis_fallback", StringComparison.Ordinal) && l.EndsWith(" 0", StringComparison.Ordinal)),
                TimeSpan.FromSeconds(10), () => $"the gateway process does not reach Redis:\n{victim.StandardOutput}");

            // Two long streams through the victim hold the fleet's 2 leases (400 tokens × 40 ms: about 16 s, past the TTL).
            using var streamClient = new HttpClient { BaseAddress = cv.BaseAddress, Timeout = Timeout.InfiniteTimeSpan };
            var streams = new[] { StreamAsync(streamClient, 400), StreamAsync(streamClient, 400) };
            await Eventually.TrueAsync(async () =>
            {
                using var r = await cs.PostAsync("/v1/generate", Generate());
                return r.StatusCode == HttpStatusCode.TooManyRequests;
            }, TimeSpan.FromSeconds(10), () => $"the victim's streams did not take the leases; its output:\n{victim.StandardOutput}{victim.StandardError}");

            victim.Kill(); // SIGKILL: no release, no more renewals
            var killed = Stopwatch.GetTimestamp();

            // The dead gateway's leases still block (renewed every 2 s until the kill, they live 6 s)...
            using (var blocked = await cs.PostAsync("/v1/generate", Generate()))
            {
                var at = Stopwatch.GetElapsedTime(killed);
                Assert.True(at < TimeSpan.FromSeconds(3), $"the check came {at.TotalSeconds:0.0} s after the kill, too late to see the leases");
                Assert.Equal(HttpStatusCode.TooManyRequests, blocked.StatusCode);
            }

            await Task.WhenAll(streams.Select(s => s.ContinueWith(static _ => { }, TaskScheduler.Default))); // cut by the kill

            // ... but no longer than the TTL: then the survivor admits.
            await Eventually.TrueAsync(async () =>
            {
                using var r = await cs.PostAsync("/v1/generate", Generate());
                return r.StatusCode == HttpStatusCode.OK;
            }, TimeSpan.FromSeconds(15), () => "the killed gateway's leases still block");
            var freedAfter = Stopwatch.GetElapsedTime(killed);
            Assert.True(freedAfter < TimeSpan.FromSeconds(6) + TimeSpan.FromSeconds(2), $"admitted {freedAfter.TotalSeconds:0.0} s after the kill (LeaseTtl 6 s)");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void Lease_settings_are_validated_at_start_up_naming_the_key()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Gateway:Shaping:Redis"] = "127.0.0.1:6379",
            ["Gateway:Shaping:RedisTimeout"] = "00:00:00",
            ["Gateway:Shaping:RedisProbeInterval"] = "00:05:00",
            ["Gateway:Shaping:Policies:short:Kind"] = "Concurrency",
            ["Gateway:Shaping:Policies:short:Scope"] = "Global",
            ["Gateway:Shaping:Policies:short:PermitLimit"] = "2",
            ["Gateway:Shaping:Policies:short:LeaseTtl"] = "00:00:00.100",
            ["Gateway:Shaping:Policies:queued:Kind"] = "Concurrency",
            ["Gateway:Shaping:Policies:queued:Scope"] = "Global",
            ["Gateway:Shaping:Policies:queued:PermitLimit"] = "2",
            ["Gateway:Shaping:Policies:queued:QueueLimit"] = "3",
            ["Gateway:Shaping:Policies:local:Kind"] = "Concurrency",
            ["Gateway:Shaping:Policies:local:PermitLimit"] = "2",
            ["Gateway:Shaping:Policies:local:LeaseTtl"] = "00:00:10",
            ["Gateway:Shaping:Policies:ok:Kind"] = "Concurrency",
            ["Gateway:Shaping:Policies:ok:Scope"] = "Global",
            ["Gateway:Shaping:Policies:ok:PermitLimit"] = "2",
            ["Gateway:Shaping:Policies:ok:LeaseTtl"] = "00:00:10",
        }).Build();

        var errors = Gateway.Configuration.ConfigurationValidator.Validate(configuration).Errors;

        Assert.Contains(errors, e => e.Contains("Gateway:Shaping:RedisTimeout", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("Gateway:Shaping:RedisProbeInterval", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("Gateway:Shaping:Policies:short:LeaseTtl", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("Gateway:Shaping:Policies:queued:QueueLimit", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("Gateway:Shaping:Policies:local:LeaseTtl is read only with Scope Global", StringComparison.Ordinal));
        Assert.DoesNotContain(errors, e => e.Contains("Policies:ok", StringComparison.Ordinal));
    }

    // Issue 12: "the same lease mechanism backs an option for a cluster's admission cap to count fleet-wide".
    [Fact]
    public async Task A_clusters_admission_cap_can_count_fleet_wide_across_two_gateways()
    {
        await using var redis = await RedisServer.StartAsync();
        GatewayHarness.Options Options()
        {
            var options = new GatewayHarness.Options
            {
                Edit = With(new JsonObject
                {
                    ["Redis"] = redis.ConnectionString,
                    ["Instances"] = 2,
                    ["Admission"] = new JsonObject
                    {
                        ["model-http"] = new JsonObject { ["MaxInFlight"] = 8, ["QueueLimit"] = 0, ["FleetMaxInFlight"] = 1, ["FleetLeaseTtl"] = "00:00:05" },
                    },
                }),
            };
            options.Sim["Sim:PerTokenMs"] = "40";
            options.Sim["Sim:Slots"] = "8";
            return options;
        }

        await using var a = await GatewayHarness.StartAsync(Options());
        await using var b = await GatewayHarness.StartAsync(Options());
        using var ca = new HttpClient { BaseAddress = a.Http };
        using var cb = new HttpClient { BaseAddress = b.Http };
        var fleet = (GlobalConcurrencyPolicy)a.Gateway.Services.GetRequiredService<ShapingRuntime>().Current.Clusters["model-http"].Fleet!;

        // A slow stream through gateway A holds the fleet's one slot: gateway B, with 8 free slots of its own, refuses.
        var stream = StreamAsync(ca, 100);
        await Eventually.TrueAsync(() => fleet.LiveLeases == 1, TimeSpan.FromSeconds(10), () => "the stream was not admitted");
        using (var refused = await cb.PostAsync("/v1/generate", Generate()))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            using var body = JsonDocument.Parse(await refused.Content.ReadAsStringAsync());
            Assert.Equal("fleet_capacity", body.RootElement.GetProperty("error").GetProperty("code").GetString());
            Assert.Equal("admission:model-http", refused.Headers.GetValues("x-gateway-limit").Single());
        }

        // Released when the stream ends: B is admitted.
        Assert.Equal(HttpStatusCode.OK, await stream);
        await Eventually.TrueAsync(async () =>
        {
            using var r = await cb.PostAsync("/v1/generate", Generate());
            return r.StatusCode == HttpStatusCode.OK;
        }, TimeSpan.FromSeconds(5), () => "gateway B was not admitted once the fleet's slot was free");
    }

    /// <summary>A streamed chat completion of <paramref name="maxTokens"/> tokens, read to its end; its status.</summary>
    private static async Task<HttpStatusCode> StreamAsync(HttpClient client, int maxTokens)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent($$"""{"model":"m","messages":[{"role":"user","content":"Count."}],"max_tokens":{{maxTokens}},"stream":true}""", Encoding.UTF8, "application/json"),
        };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        await response.Content.ReadAsStringAsync();
        return response.StatusCode;
    }
}

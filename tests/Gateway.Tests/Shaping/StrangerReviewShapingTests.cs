using System.Text.Json.Nodes;
using Gateway.Configuration;
using Gateway.Shaping;
using Gateway.Shaping.Policies;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging.Abstractions;
using StackExchange.Redis;
using TestSupport;
using static Gateway.Tests.Tenants.TenantsConfig;

namespace Gateway.Tests.Shaping;

/// <summary>
/// Fixes from a stranger's review of fleet-wide (Redis) shaping and tenant quotas (issue 13), each with a real
/// redis-server: orphan leases after a Redis freeze (litellm#27955, litellm#30020), leases lost by a Redis restart
/// without persistence (litellm#16011), an out-of-range whole number in the configuration, and the reload log line.
/// </summary>
[Collection(SerialTests.Name)]
public sealed class StrangerReviewShapingTests : IDisposable
{
    private static readonly PartitionKey s_global = PartitionKey.TryParse("Global", out var g, out _) ? g : null!;
    private readonly string _dir = Directory.CreateTempSubdirectory("gw-stranger-").FullName;

    private static PolicyOptions Inflight(int limit, TimeSpan ttl) => new()
    {
        Kind = PolicyKind.Concurrency, Scope = PolicyScope.Global, Partition = "Global", PermitLimit = limit, LeaseTtl = ttl,
    };

    private static (ShapingRedis Redis, GlobalConcurrencyPolicy Policy) Gateway(RedisServer redis, PolicyOptions o, int localShare)
    {
        var connection = new ShapingRedis(redis.ConnectionString, TimeSpan.FromMilliseconds(250), TimeSpan.FromMilliseconds(300), TimeProvider.System, NullLogger.Instance);
        var local = new LocalLimiterPolicy("inflight", o with { PermitLimit = localShare }, s_global, TimeProvider.System);
        return (connection, new GlobalConcurrencyPolicy("inflight", o, s_global, connection, local, TimeProvider.System));
    }

    /// <summary>
    /// Stranger review, litellm#27955 / litellm#30020: MaxInFlight 3 fleet-wide, Redis frozen (SIGSTOP), one short request
    /// per gateway admitted by the local share after RedisTimeout, then SIGCONT: the acquire scripts the clients gave up
    /// on run when Redis resumes. They used to leave two leases (now + 30 s) that nobody renewed or released, so the
    /// fleet admitted 1 of 3 for 30 s. Now each timed-out acquire's lease is removed once Redis answers again.
    /// </summary>
    [Fact]
    public async Task Acquires_that_timed_out_on_a_frozen_redis_leave_no_orphan_leases_when_it_resumes_litellm_27955()
    {
        await using var redis = await RedisServer.StartAsync();
        var o = Inflight(3, TimeSpan.FromSeconds(30));
        var (ra, a) = Gateway(redis, o, localShare: 1);
        var (rb, b) = Gateway(redis, o, localShare: 1);
        await using var _ra = ra;
        await using var _rb = rb;
        await using var mux = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var set = new RedisKey("cl:{inflight}:p");

        // Redis answers: a lease is added and released.
        var first = await a.AcquireAsync("p", 1, default);
        Assert.True(first.Admitted);
        Assert.Equal(1, await mux.GetDatabase().SortedSetLengthAsync(set));
        first.Lease!.Dispose();
        await Eventually.TrueAsync(async () => await mux.GetDatabase().SortedSetLengthAsync(set) == 0, TimeSpan.FromSeconds(5), () => "lease not released");

        await redis.PauseAsync();
        try
        {
            foreach (var policy in new[] { a, b })
            {
                var decision = await policy.AcquireAsync("p", 1, default); // RedisTimeout, then the local share admits
                Assert.True(decision.Admitted);
                decision.Lease?.Dispose(); // a short request
            }

            Assert.True(ra.FallingBack && rb.FallingBack);
        }
        finally
        {
            await redis.ResumeAsync();
        }

        await Eventually.TrueAsync(() => !ra.FallingBack && !rb.FallingBack, TimeSpan.FromSeconds(10), () => "the probes did not find Redis again");
        await Eventually.TrueAsync(async () => await mux.GetDatabase().SortedSetLengthAsync(set) == 0, TimeSpan.FromSeconds(5),
            () => $"orphan leases after SIGCONT: {string.Join(", ", mux.GetDatabase().SortedSetRangeByRankWithScores(set))}");
        Assert.Equal(0, ra.PendingCompensations + rb.PendingCompensations);
        Assert.Equal(0, ra.CompensationsDropped + rb.CompensationsDropped);

        // The fleet admits its full 3 again at once (with the orphans it admitted 1 for 30 s), and refuses a fourth.
        var held = new List<PolicyDecision>();
        for (var i = 0; i < 3; i++)
        {
            var d = await (i % 2 == 0 ? a : b).AcquireAsync("p", 1, default);
            Assert.True(d.Admitted, $"exchange {i + 1} of 3 refused after the freeze");
            held.Add(d);
        }

        Assert.False((await a.AcquireAsync("p", 1, default)).Admitted);
        Assert.False(ra.FallingBack);
        held.ForEach(static d => d.Lease!.Dispose());
        await a.DisposeAsync();
        await b.DisposeAsync();
    }

    /// <summary>
    /// Stranger review, litellm#16011: a Redis restarted without persistence forgets the leases of live exchanges, and
    /// renewal (ZADD XX) never put them back, so the fleet admitted past its limit until those exchanges ended. Now the
    /// renewal re-adds a missing lease: within a renewal interval (LeaseTtl/3) the set holds them again and a newcomer
    /// over the limit is refused.
    /// </summary>
    [Fact]
    public async Task Leases_lost_by_a_redis_restart_are_put_back_by_the_next_renewal_litellm_16011()
    {
        await using var redis = await RedisServer.StartAsync();
        var o = Inflight(2, TimeSpan.FromSeconds(3)); // renewed every second
        var (ra, a) = Gateway(redis, o, localShare: 1);
        var (rb, b) = Gateway(redis, o, localShare: 1);
        await using var _ra = ra;
        await using var _rb = rb;
        var held = new[] { await a.AcquireAsync("p", 1, default), await a.AcquireAsync("p", 1, default) };
        Assert.All(held, static d => Assert.True(d.Admitted));
        Assert.False((await b.AcquireAsync("p", 1, default)).Admitted);

        await redis.StopAsync();
        await redis.RestartAsync(); // empty: no RDB, no AOF
        await using var mux = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var set = new RedisKey("cl:{inflight}:p");
        Assert.Equal(0, await mux.GetDatabase().SortedSetLengthAsync(set));

        await Eventually.TrueAsync(async () => await mux.GetDatabase().SortedSetLengthAsync(set) == 2, TimeSpan.FromSeconds(15), () => "the renewal did not put the lost leases back");
        var ttl = await mux.GetDatabase().KeyTimeToLiveAsync(set);
        Assert.NotNull(ttl); // re-added with its expiry

        // A newcomer through the other gateway (once it finds Redis again) is refused: the fleet's count is right.
        await Eventually.TrueAsync(async () =>
        {
            var d = await b.AcquireAsync("p", 1, default);
            d.Lease?.Dispose();
            return !rb.FallingBack && !d.Admitted;
        }, TimeSpan.FromSeconds(10), () => "a newcomer over the limit was admitted after the restart");
        Assert.Equal(2, await mux.GetDatabase().SortedSetLengthAsync(set));

        foreach (var d in held)
        {
            d.Lease!.Dispose();
        }

        await Eventually.TrueAsync(async () => await mux.GetDatabase().SortedSetLengthAsync(set) == 0, TimeSpan.FromSeconds(5), () => "leases not released");
        await a.DisposeAsync();
        await b.DisposeAsync();
    }

    /// <summary>Stranger review: 1099511627776 for an int key said "must be a whole number"; it is out of range, with the bounds.</summary>
    [Theory]
    [InlineData("Gateway:Tenants:acme:Limits:RequestsPerMinute", "1099511627776", "from -2147483648 to 2147483647")]
    [InlineData("Gateway:Tenants:acme:Limits:Tokens", "99999999999999999999", "from -9223372036854775808 to 9223372036854775807")]
    public void A_whole_number_too_large_for_its_key_is_out_of_range_with_the_bounds(string key, string value, string bounds)
    {
        var type = typeof(Gateway.Tenants.TenantLimitsOptions).GetProperty(key[(key.LastIndexOf(':') + 1)..])!.PropertyType;
        Assert.Equal(bounds.Contains("-2147483648", StringComparison.Ordinal) ? typeof(int) : typeof(long), type);
        var configuration = new ConfigurationBuilder()
            .AddJsonFile(RepoPaths.Combine("appsettings.json"))
            .AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Gateway:Auth:Mode"] = "ApiKey",
                ["Gateway:Tenants:acme:Keys:0"] = Hashed("sk-acme-1234567890"),
                [key] = value,
            })
            .Build();
        var errors = ConfigurationValidator.Validate(configuration).Errors;
        var error = Assert.Single(errors, e => e.Contains(key, StringComparison.Ordinal));
        Assert.Contains("out of range", error, StringComparison.Ordinal);
        Assert.Contains(bounds, error, StringComparison.Ordinal);
        Assert.Contains($"(was '{value}')", error, StringComparison.Ordinal);
    }

    /// <summary>Stranger review: with only tenant quotas, a reload logged "0 policies"; the tenants' policies are counted.</summary>
    [Fact]
    public async Task The_reload_log_counts_the_tenants_policies()
    {
        static string Config(params string[] tenants)
        {
            var map = new JsonObject();
            foreach (var tenant in tenants)
            {
                map[tenant] = new JsonObject
                {
                    ["Keys"] = new JsonArray(Hashed($"sk-{tenant}-1234567890")),
                    ["Limits"] = new JsonObject { ["RequestsPerMinute"] = 100, ["MaxInFlight"] = 2 },
                };
            }

            return new JsonObject { ["Gateway"] = new JsonObject { ["Auth"] = new JsonObject { ["Mode"] = "ApiKey" }, ["Tenants"] = map } }.ToJsonString();
        }

        var file = Path.Combine(_dir, "tenants.json");
        await File.WriteAllTextAsync(file, Config("acme"));
        await using var gw = await GatewayHarness.StartAsync(new GatewayHarness.Options { ConfigFile = file });
        await File.WriteAllTextAsync(file, Config("acme", "globex"));
        await Eventually.TrueAsync(() => gw.Logs.Entries.Any(static e => e.EventId.Id == 4201), TimeSpan.FromSeconds(10), () => "no reload logged");
        var line = gw.Logs.Entries.First(static e => e.EventId.Id == 4201).Message;
        Assert.Contains("0 policies, 4 tenant policies", line, StringComparison.Ordinal); // 2 tenants × (requests per minute, in flight)
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

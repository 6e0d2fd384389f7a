using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gateway.Shaping;
using Microsoft.Extensions.DependencyInjection;
using TestSupport;
using static Gateway.Tests.Tenants.TenantTestSupport;

namespace Gateway.Tests.Tenants;

/// <summary>
/// A tenant's <c>Limits</c> compiled into the shaping policies, end to end through a real gateway and ModelSim (and a real
/// redis-server for the fleet-wide case): a refusal names the tenant's limit (<c>tenant:NAME:requests_per_minute</c>,
/// <c>tenant:NAME:tokens</c>, <c>tenant:NAME:in_flight</c>) in the body and <c>x-gateway-limit</c>, with a true
/// <c>Retry-After</c>; other tenants and callers without a tenant are not counted against it.
/// </summary>
[Collection(SerialTests.Name)]
public sealed class TenantLimitTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("gw-tenants-").FullName;

    private static JsonObject Tenants(JsonObject acmeLimits) => new()
    {
        ["acme"] = new JsonObject { ["Limits"] = acmeLimits },
        ["globex"] = new JsonObject(),
    };

    private static async Task<(string Code, string Message)> ErrorOf(HttpResponseMessage response)
    {
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var error = doc.RootElement.GetProperty("error");
        return (error.GetProperty("code").GetString()!, error.GetProperty("message").GetString()!);
    }

    [Fact]
    public async Task Requests_per_minute_refuses_naming_the_tenants_limit_and_counts_nobody_else()
    {
        await using var h = await GatewayHarness.StartAsync(Options(Tenants(new JsonObject { ["RequestsPerMinute"] = 3 })));
        using var client = new HttpClient { BaseAddress = h.Http };

        for (var i = 0; i < 3; i++)
        {
            using var ok = await client.SendAsync(Generate("acme"));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        using var refused = await client.SendAsync(Generate("acme"));
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        var (code, message) = await ErrorOf(refused);
        Assert.Equal("rate_limited", code);
        Assert.Contains("tenant:acme:requests_per_minute", message, StringComparison.Ordinal);
        Assert.Equal("tenant:acme:requests_per_minute", Assert.Single(refused.Headers.GetValues("x-gateway-limit")));
        var retryAfter = refused.Headers.RetryAfter?.Delta;
        Assert.NotNull(retryAfter);
        Assert.InRange(retryAfter!.Value.TotalSeconds, 1, 60); // a one-minute window in 5 s segments: the first segment leaves within the minute
        Assert.Equal("0", Assert.Single(refused.Headers.GetValues("x-ratelimit-remaining-requests")));

        // Another tenant, and a caller without one, are not counted against acme's limit.
        using var other = await client.SendAsync(Generate("globex"));
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
        using var anonymous = await client.SendAsync(Generate(null));
        Assert.Equal(HttpStatusCode.OK, anonymous.StatusCode);

        // Per-tenant metrics: the refusal by limit, the requests by status class, the tokens by type; tenant is a configured name.
        using var admin = new HttpClient { BaseAddress = h.Admin };
        await Eventually.TrueAsync(async () =>
        {
            var lines = (await admin.GetStringAsync("/metrics")).Split('\n');
            return lines.Any(l => l.StartsWith("gateway_tenant_refusals_total{", StringComparison.Ordinal) && l.Contains("limit=\"requests_per_minute\"", StringComparison.Ordinal)
                    && l.Contains("tenant=\"acme\"", StringComparison.Ordinal) && l.EndsWith(" 1", StringComparison.Ordinal))
                && lines.Any(l => l.StartsWith("gateway_tenant_requests_total{", StringComparison.Ordinal) && l.Contains("status_class=\"2xx\"", StringComparison.Ordinal)
                    && l.Contains("tenant=\"acme\"", StringComparison.Ordinal) && l.EndsWith(" 3", StringComparison.Ordinal))
                && lines.Any(l => l.StartsWith("gateway_tenant_tokens_total{", StringComparison.Ordinal) && l.Contains("gen_ai_token_type=\"output\"", StringComparison.Ordinal)
                    && l.Contains("tenant=\"acme\"", StringComparison.Ordinal) && l.EndsWith(" 12", StringComparison.Ordinal))
                && !lines.Any(l => l.StartsWith("gateway_tenant_", StringComparison.Ordinal) && l.Contains("tenant=\"\"", StringComparison.Ordinal));
        }, TimeSpan.FromSeconds(10), () => "per-tenant metrics missing");
    }

    /// <summary>BerriAI/litellm#10555: a key's TPM limit was not enforced; here the budget refuses, and Retry-After is honoured.</summary>
    [Fact]
    public async Task Token_budget_refuses_naming_tenant_tokens_and_its_Retry_After_is_true()
    {
        // 40 tokens per 3 s; each request costs 1 prompt token + 8 output tokens, reconciled with the usage ModelSim reports.
        await using var h = await GatewayHarness.StartAsync(Options(Tenants(new JsonObject { ["Tokens"] = 40, ["TokenWindow"] = "00:00:03" })));
        using var client = new HttpClient { BaseAddress = h.Http };

        HttpResponseMessage? refused = null;
        for (var i = 0; i < 20 && refused is null; i++)
        {
            var response = await client.SendAsync(Generate("acme", maxTokens: 8));
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                refused = response;
            }
            else
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                response.Dispose();
            }
        }

        Assert.NotNull(refused);
        using (refused)
        {
            var (code, message) = await ErrorOf(refused);
            Assert.Equal("tokens_exhausted", code);
            Assert.Contains("tenant:acme:tokens", message, StringComparison.Ordinal);
            Assert.Equal("tenant:acme:tokens", Assert.Single(refused.Headers.GetValues("x-gateway-limit")));
            var retryAfter = refused.Headers.RetryAfter!.Delta!.Value;
            Assert.InRange(retryAfter.TotalSeconds, 1, 3);

            // True: after Retry-After the same request is admitted (and globex was never limited meanwhile).
            using var other = await client.SendAsync(Generate("globex", maxTokens: 8));
            Assert.Equal(HttpStatusCode.OK, other.StatusCode);
            await Task.Delay(retryAfter + TimeSpan.FromMilliseconds(100));
            using var again = await client.SendAsync(Generate("acme", maxTokens: 8));
            Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        }
    }

    [Fact]
    public async Task In_flight_limit_refuses_a_second_concurrent_request_naming_tenant_in_flight()
    {
        var options = Options(Tenants(new JsonObject { ["MaxInFlight"] = 1 }));
        options.Sim["Sim:PerTokenMs"] = "20";
        await using var h = await GatewayHarness.StartAsync(options);
        using var client = new HttpClient { BaseAddress = h.Http };

        // A stream of 60 tokens at 20 ms holds acme's one slot for about 1.2 s.
        using var slow = await client.SendAsync(Generate("acme", maxTokens: 60, stream: true), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, slow.StatusCode);

        using var refused = await client.SendAsync(Generate("acme"));
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        var (code, message) = await ErrorOf(refused);
        Assert.Equal("concurrency", code);
        Assert.Contains("tenant:acme:in_flight", message, StringComparison.Ordinal);
        Assert.Equal("tenant:acme:in_flight", Assert.Single(refused.Headers.GetValues("x-gateway-limit")));
        Assert.NotNull(refused.Headers.RetryAfter?.Delta);

        using var other = await client.SendAsync(Generate("globex"));
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);

        await (await slow.Content.ReadAsStreamAsync()).CopyToAsync(Stream.Null); // the stream ends: the slot is free again
        await Eventually.TrueAsync(async () =>
        {
            using var r = await client.SendAsync(Generate("acme"));
            return r.StatusCode == HttpStatusCode.OK;
        }, TimeSpan.FromSeconds(5), () => "acme's slot was not given back when its stream ended");
    }

    /// <summary>
    /// BerriAI/litellm#13202 and #40291: a per-key RPM/TPM limit became limit x replicas because each instance counted
    /// alone (or read only its memory). Here two gateways sharing one redis-server admit the tenant's limit once.
    /// </summary>
    [Fact]
    public async Task Two_gateways_sharing_one_redis_count_the_tenants_requests_per_minute_fleet_wide()
    {
        await using var redis = await RedisServer.StartAsync();
        // A generous Redis timeout: on a loaded machine a 250 ms one falls back to each gateway's local share (limit / Instances).
        var shaping = new JsonObject { ["Redis"] = redis.ConnectionString, ["RedisTimeout"] = "00:00:03" };
        await using var a = await GatewayHarness.StartAsync(Options(Tenants(new JsonObject { ["RequestsPerMinute"] = 6 }), shaping));
        await using var b = await GatewayHarness.StartAsync(Options(Tenants(new JsonObject { ["RequestsPerMinute"] = 6 }), (JsonObject)shaping.DeepClone()));
        Assert.Equal(PolicyScope.Global, a.Gateway.Services.GetRequiredService<ShapingRuntime>().Current.Policies["tenant:acme:requests_per_minute"].Options.Scope);
        using var ca = new HttpClient { BaseAddress = a.Http };
        using var cb = new HttpClient { BaseAddress = b.Http };

        var statuses = new List<(HttpStatusCode Status, string? Limit, TimeSpan? RetryAfter)>();
        for (var i = 0; i < 6; i++)
        {
            foreach (var client in new[] { ca, cb })
            {
                using var r = await client.SendAsync(Generate("acme"));
                statuses.Add((r.StatusCode, r.Headers.TryGetValues("x-gateway-limit", out var l) ? l.Single() : null, r.Headers.RetryAfter?.Delta));
            }
        }

        // 6 per minute for the fleet: 6 of the 12 admitted (each gateway alone would admit 6, 12 in all).
        Assert.Equal(6, statuses.Count(s => s.Status == HttpStatusCode.OK));
        var refusals = statuses.Where(s => s.Status != HttpStatusCode.OK).ToList();
        Assert.Equal(6, refusals.Count);
        Assert.All(refusals, s =>
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, s.Status);
            Assert.Equal("tenant:acme:requests_per_minute", s.Limit);
            Assert.NotNull(s.RetryAfter);
            // Fleet-wide, the sliding window is the two-window estimate (RedisLimiter: previous·(1 − elapsed/window) +
            // current). With all 6 in the current window, the next is admitted once the window has ended and 1/6 of the
            // next has passed (6·(1 − 10/60) + 1 = 6): 60 s + 10 s, less the time already elapsed. Not the local counter's
            // at most 60 s: this is the time that is true for this algorithm.
            Assert.InRange(s.RetryAfter!.Value.TotalSeconds, 1, 70);
        });

        // globex has no limits: both gateways admit it.
        using var g = await cb.SendAsync(Generate("globex"));
        Assert.Equal(HttpStatusCode.OK, g.StatusCode);
    }

    [Fact]
    public async Task A_reload_updates_the_tenants_limits()
    {
        var file = Path.Combine(_dir, "tenants.json");
        static string Config(int rpm) => new JsonObject
        {
            ["Gateway"] = new JsonObject { ["Tenants"] = new JsonObject { ["acme"] = new JsonObject { ["Limits"] = new JsonObject { ["RequestsPerMinute"] = rpm } } } },
        }.ToJsonString();
        await File.WriteAllTextAsync(file, Config(2));
        var options = Options(new JsonObject { ["acme"] = new JsonObject() });
        options.ConfigFile = file;
        await using var h = await GatewayHarness.StartAsync(options);
        var runtime = h.Gateway.Services.GetRequiredService<ShapingRuntime>();
        using var client = new HttpClient { BaseAddress = h.Http };

        for (var i = 0; i < 2; i++)
        {
            using var ok = await client.SendAsync(Generate("acme"));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        using (var refused = await client.SendAsync(Generate("acme")))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        }

        await File.WriteAllTextAsync(file, Config(5));
        await Eventually.TrueAsync(() => runtime.Current.Policies.TryGetValue("tenant:acme:requests_per_minute", out var p) && p.Options.PermitLimit == 5,
            TimeSpan.FromSeconds(10), () => "the tenant's new limit was not applied");

        // A changed limit is a new policy (as for any policy whose settings change): 5 more in this minute.
        var admitted = 0;
        for (var i = 0; i < 7; i++)
        {
            using var r = await client.SendAsync(Generate("acme"));
            admitted += r.StatusCode == HttpStatusCode.OK ? 1 : 0;
        }

        Assert.Equal(5, admitted);

        // A limit removed: the policy is gone, acme is not limited.
        await File.WriteAllTextAsync(file, Config(0));
        await Eventually.TrueAsync(() => !runtime.Current.Policies.ContainsKey("tenant:acme:requests_per_minute"),
            TimeSpan.FromSeconds(10), () => "the removed limit stayed");
        using var free = await client.SendAsync(Generate("acme"));
        Assert.Equal(HttpStatusCode.OK, free.StatusCode);
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

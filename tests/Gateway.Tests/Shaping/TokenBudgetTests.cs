using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gateway.Configuration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using TestSupport;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Shaping;

/// <summary>
/// Issue 12: token budgets reserve, then reconcile. A request over the whole budget is refused at once
/// (<c>request_too_large</c>, no Retry-After) the same way locally and fleet-wide; usage above the reservation is still
/// charged (debt); the budget is per <c>Window</c>. Mirrors BerriAI/litellm#4829 (a key's tpm_limit of 100 let single
/// requests of thousands of tokens through).
/// </summary>
[Collection(SerialTests.Name)]
public sealed class TokenBudgetTests
{
    private static JsonObject Budget(long tokens, string? window = null, string? redis = null)
    {
        var policy = new JsonObject { ["Kind"] = "Tokens", ["Tokens"] = tokens, ["Partition"] = "ApiKey", ["Scope"] = redis is null ? "Local" : "Global" };
        if (window is not null)
        {
            policy["Window"] = window;
        }

        var shaping = Policies(("tpm", policy));
        if (redis is not null)
        {
            shaping["Redis"] = redis;
        }

        return shaping;
    }

    /// <summary>A backend that answers every chat request with the given usage, whatever max_tokens said.</summary>
    private static Task<TestBackend> UsageBackendAsync(int prompt, int completion) => TestBackend.StartAsync(app => app.MapPost("/v1/chat/completions", () => Results.Json(new
    {
        id = "x", @object = "chat.completion", choices = new[] { new { index = 0, message = new { role = "assistant", content = "ok" }, finish_reason = "stop" } },
        usage = new { prompt_tokens = prompt, completion_tokens = completion, total_tokens = prompt + completion },
    })));

    private static StringContent Chat(int maxTokens) => new(
        $$"""{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":{{maxTokens}}}""", Encoding.UTF8, "application/json");

    // Found by a stranger's review of issue 12: a stream without max_tokens, cut short by its client before the usage
    // chunk, was charged at most its reservation (the default max_tokens), so a budget could be taken many times over.
    [Fact]
    public async Task A_stream_cut_short_without_max_tokens_is_charged_every_chunk_delivered()
    {
        var options = new GatewayHarness.Options { Edit = c => { With(Budget(1000), openaiPolicies: "tpm")(c); c["Gateway"]!["Shaping"]!["DefaultMaxTokens"] = 10; } };
        options.Sim["Sim:DefaultMaxTokens"] = "3000";
        options.Sim["Sim:PerTokenMs"] = "0.5";
        await using var h = await GatewayHarness.StartAsync(options);
        using var client = new HttpClient { BaseAddress = h.Http };

        // Read 1,100 content chunks of a stream that would go on for 3,000, then leave.
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent("""{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json"),
        })
        using (var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var chunks = 0;
            while (chunks < 1100 && await reader.ReadLineAsync() is { } line)
            {
                if (line.StartsWith("data: {", StringComparison.Ordinal))
                {
                    chunks++;
                }
            }

            Assert.Equal(1100, chunks);
        }

        // The 1,100 tokens it took are charged: the partition is in debt, and the next request waits.
        await Eventually.TrueAsync(async () =>
        {
            using var next = await client.PostAsync("/v1/chat/completions", Chat(1));
            return next.StatusCode == HttpStatusCode.TooManyRequests;
        }, TimeSpan.FromSeconds(10), () => "the cut stream was charged less than it delivered");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_request_over_the_whole_budget_is_refused_at_once_without_retry_after(bool global)
    {
        await using var redis = global ? await RedisServer.StartAsync() : null;
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { Edit = With(Budget(1000, redis: redis?.ConnectionString), openaiPolicies: "tpm") });
        using var client = new HttpClient { BaseAddress = h.Http };

        for (var i = 0; i < 2; i++)
        {
            using var refused = await client.PostAsync("/v1/chat/completions", Chat(maxTokens: 4000));
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.Null(refused.Headers.RetryAfter); // no wait would help
            var error = JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Equal("request_too_large", error.GetProperty("code").GetString());
            var message = error.GetProperty("message").GetString()!;
            Assert.Contains("'tpm'", message, StringComparison.Ordinal);
            Assert.Contains("1000 tokens", message, StringComparison.Ordinal);
            Assert.Matches(@"needs 400\d tokens", message);
        }

        Assert.Equal(0, h.Sim.Stats.Requests);
        using var small = await client.PostAsync("/v1/chat/completions", Chat(maxTokens: 100));
        Assert.Equal(HttpStatusCode.OK, small.StatusCode); // the refusals charged nothing
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Usage_above_the_reservation_is_charged_and_later_requests_wait_for_the_debt(bool global)
    {
        await using var redis = global ? await RedisServer.StartAsync() : null;
        await using var backend = await UsageBackendAsync(prompt: 5, completion: 1495); // ignores max_tokens: 1500 in all
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { HttpBackend = backend.Address, Edit = With(Budget(1000, redis: redis?.ConnectionString), openaiPolicies: "tpm") });
        using var client = new HttpClient { BaseAddress = h.Http };

        using var first = await client.PostAsync("/v1/chat/completions", Chat(maxTokens: 10));
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Contains("\"completion_tokens\":1495", await first.Content.ReadAsStringAsync(), StringComparison.Ordinal); // delivered whole

        using var second = await client.PostAsync("/v1/chat/completions", Chat(maxTokens: 10));
        Assert.Equal(HttpStatusCode.TooManyRequests, second.StatusCode);
        Assert.Equal("tokens_exhausted", JsonDocument.Parse(await second.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
        // 1500 charged against 1000 a minute: ~500 tokens of debt plus this request's ~15, repaid at 1000 a minute.
        Assert.InRange(second.Headers.RetryAfter!.Delta!.Value.TotalSeconds, 28, 33);
        Assert.Equal("0", second.Headers.GetValues("x-ratelimit-remaining-tokens").Single());

        using var admin = new HttpClient { BaseAddress = h.Admin };
        await Eventually.TrueAsync(async () => (await admin.GetStringAsync("/metrics")).Split('\n').Any(l =>
                l.StartsWith("gateway_shaping_tokens_total{", StringComparison.Ordinal) && l.Contains("kind=\"actual\"", StringComparison.Ordinal)
                && l.Contains("policy=\"tpm\"", StringComparison.Ordinal) && l.EndsWith(" 1500", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(5), () => "gateway_shaping_tokens_total{kind=actual} is not the 1500 charged");
    }

    [Fact]
    public async Task The_budget_is_per_window_an_hour_here()
    {
        await using var backend = await UsageBackendAsync(prompt: 10, completion: 50);
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { HttpBackend = backend.Address, Edit = With(Budget(100, window: "01:00:00"), openaiPolicies: "tpm") });
        using var client = new HttpClient { BaseAddress = h.Http };

        using var first = await client.PostAsync("/v1/chat/completions", Chat(maxTokens: 50));
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        using var second = await client.PostAsync("/v1/chat/completions", Chat(maxTokens: 50));
        Assert.Equal(HttpStatusCode.TooManyRequests, second.StatusCode);
        // 60 charged, ~51 more asked, 100 an hour: minutes, not the seconds a per-minute budget would give.
        Assert.InRange(second.Headers.RetryAfter!.Delta!.Value.TotalSeconds, 300, 800);
        Assert.Contains("per 01:00:00", JsonDocument.Parse(await second.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Keys_a_policy_kind_does_not_read_and_a_window_contradicting_TokensPerMinute_are_errors()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Gateway:Shaping:Policies:old:Kind"] = "Tokens",
            ["Gateway:Shaping:Policies:old:TokensPerMinute"] = "1000",
            ["Gateway:Shaping:Policies:old:Window"] = "01:00:00",
            ["Gateway:Shaping:Policies:both:Kind"] = "Tokens",
            ["Gateway:Shaping:Policies:both:TokensPerMinute"] = "1000",
            ["Gateway:Shaping:Policies:both:Tokens"] = "1000",
            ["Gateway:Shaping:Policies:stray:Kind"] = "Tokens",
            ["Gateway:Shaping:Policies:stray:Tokens"] = "1000",
            ["Gateway:Shaping:Policies:stray:TokenLimit"] = "5",
            ["Gateway:Shaping:Policies:fw:Kind"] = "FixedWindow",
            ["Gateway:Shaping:Policies:fw:PermitLimit"] = "5",
            ["Gateway:Shaping:Policies:fw:SegmentsPerWindow"] = "5",
            ["Gateway:Shaping:Policies:ok:Kind"] = "Tokens",
            ["Gateway:Shaping:Policies:ok:Tokens"] = "100000",
            ["Gateway:Shaping:Policies:ok:Window"] = "1.00:00:00",
        }).Build();

        var errors = ConfigurationValidator.Validate(configuration).Errors;

        Assert.Contains(errors, e => e.Contains("Gateway:Shaping:Policies:old:Window", StringComparison.Ordinal) && e.Contains("TokensPerMinute", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("Gateway:Shaping:Policies:both", StringComparison.Ordinal) && e.Contains("not both", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("Gateway:Shaping:Policies:stray:TokenLimit is not read by a Tokens policy", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("Gateway:Shaping:Policies:fw:SegmentsPerWindow is not read by a FixedWindow policy", StringComparison.Ordinal));
        Assert.DoesNotContain(errors, e => e.Contains("Policies:ok", StringComparison.Ordinal));
    }
}

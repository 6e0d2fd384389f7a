using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using TestSupport;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Shaping;

/// <summary>Token-aware limits: charged up front from max_tokens and the prompt, corrected by the usage the backend reports.</summary>
public sealed class TokenLimitTests
{
    private static JsonObject TokensPolicy(long perMinute) => Policies(("tpm", new JsonObject { ["Kind"] = "Tokens", ["TokensPerMinute"] = perMinute, ["Partition"] = "ApiKey" }));

    [Fact]
    public async Task Up_front_charge_stops_parallel_requests_from_overshooting_the_budget()
    {
        var options = new GatewayHarness.Options { Edit = With(TokensPolicy(1000), openaiPolicies: "tpm") };
        options.Sim["Sim:PerTokenMs"] = "20";
        await using var h = await GatewayHarness.StartAsync(options);
        using var client = new HttpClient { BaseAddress = h.Http };

        // Each asks for up to 300 output tokens: only three fit a budget of 1000 at once, whatever they really use.
        var responses = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => client.PostAsync("/v1/generate", Generate(maxTokens: 300))));

        Assert.Equal(3, responses.Count(r => r.StatusCode == HttpStatusCode.OK));
        var refused = responses.First(r => r.StatusCode == HttpStatusCode.TooManyRequests);
        Assert.Equal("tokens_exhausted", JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.True(responses.First(r => r.IsSuccessStatusCode).Headers.Contains("x-ratelimit-remaining-tokens"));
    }

    [Fact]
    public async Task A_megabyte_prompt_of_one_repeated_character_is_counted_and_answered_promptly()
    {
        // Counted exactly, one 1 MiB "word" pinned a core for many minutes (the encoder is quadratic in a word's
        // length) and the request never got an answer; over-long runs are now counted in slices, in linear time.
        var options = new GatewayHarness.Options { Edit = With(TokensPolicy(1_000_000), openaiPolicies: "tpm") };
        options.Sim["Sim:PrefillPerTokenMs"] = "0";
        await using var h = await GatewayHarness.StartAsync(options);
        using var client = new HttpClient { BaseAddress = h.Http, Timeout = TimeSpan.FromSeconds(60) };
        var prompt = new string('x', 1_048_500); // with the JSON around it, just under the 1 MiB the gateway inspects

        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        using var response = await client.PostAsync("/v1/generate", Generate(maxTokens: 1, prompt: prompt));
        var elapsed = System.Diagnostics.Stopwatch.GetElapsedTime(start);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(elapsed < TimeSpan.FromSeconds(30), $"answered after {elapsed}"); // sliced: well under a second of counting; generous for a loaded machine
        var promptTokens = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("prompt_tokens").GetInt32();
        Assert.InRange(promptTokens, prompt.Length / 8, (prompt.Length / 8) + 8192); // "xxxxxxxx" is one cl100k token
        var remaining = long.Parse(response.Headers.GetValues("x-ratelimit-remaining-tokens").Single(), System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(remaining <= 1_000_000 - (prompt.Length / 8), $"remaining {remaining}: the prompt was charged up front");
    }

    [Fact]
    public async Task Charges_are_corrected_by_reported_usage()
    {
        // The backend reports far fewer tokens than max_tokens allows: the refunds keep the budget open.
        await using var backend = await TestBackend.StartAsync(app => app.MapPost("/v1/chat/completions", () => Results.Json(new
        {
            id = "x", @object = "chat.completion", choices = new[] { new { index = 0, message = new { role = "assistant", content = "ok" }, finish_reason = "stop" } },
            usage = new { prompt_tokens = 5, completion_tokens = 5, total_tokens = 10 },
        })));
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { HttpBackend = backend.Address, Edit = With(TokensPolicy(1000), openaiPolicies: "tpm") });
        using var client = new HttpClient { BaseAddress = h.Http };

        for (var i = 0; i < 20; i++)
        {
            using var r = await client.PostAsync("/v1/chat/completions", Chat(maxTokens: 600, stream: false));
            Assert.Equal(HttpStatusCode.OK, r.StatusCode); // without corrections the second request would already exceed 1000
        }
    }

    [Fact]
    public async Task A_stream_is_asked_for_usage_the_usage_chunk_is_hidden_and_the_charge_corrected()
    {
        var askedForUsage = new List<bool>();
        await using var backend = await TestBackend.StartAsync(app => app.MapPost("/v1/chat/completions", async (HttpContext ctx) =>
        {
            using var doc = await JsonDocument.ParseAsync(ctx.Request.Body);
            var include = doc.RootElement.TryGetProperty("stream_options", out var so) && so.GetProperty("include_usage").GetBoolean();
            lock (askedForUsage)
            {
                askedForUsage.Add(include);
            }

            ctx.Response.ContentType = "text/event-stream";
            for (var i = 0; i < 3; i++)
            {
                await ctx.Response.WriteAsync($"data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i}\"}}}}]}}\n\n");
                await ctx.Response.Body.FlushAsync();
            }

            if (include)
            {
                await ctx.Response.WriteAsync("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":3,\"total_tokens\":7}}\n\n");
            }

            await ctx.Response.WriteAsync("data: [DONE]\n\n");
        }));
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { HttpBackend = backend.Address, Edit = With(TokensPolicy(2000), openaiPolicies: "tpm") });
        using var client = new HttpClient { BaseAddress = h.Http };

        // The client did not ask for usage: the gateway asks, reads it, and hides it.
        for (var i = 0; i < 10; i++)
        {
            using var r = await client.PostAsync("/v1/chat/completions", Chat(maxTokens: 900, stream: true));
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            var text = await r.Content.ReadAsStringAsync();
            Assert.DoesNotContain("usage", text, StringComparison.Ordinal);
            Assert.Equal(4, text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Length); // 3 tokens + [DONE]
            Assert.EndsWith("data: [DONE]\n\n", text, StringComparison.Ordinal);
        }

        Assert.All(askedForUsage, Assert.True);

        // A client that asked for usage gets it.
        using (var withUsage = await client.PostAsync("/v1/chat/completions", Chat(maxTokens: 900, stream: true, includeUsage: true)))
        {
            Assert.Contains("\"usage\"", await withUsage.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // A repeated key (the last one wins, as in the backend's parser) is forwarded, not a 500: the rewrite keeps one of each.
        using (var repeated = await client.PostAsync("/v1/chat/completions", new StringContent(
            """{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}],"max_tokens":3,"stream":true,"stream_options":{"x":1},"stream_options":{"y":2}}""",
            System.Text.Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.OK, repeated.StatusCode);
            var text = await repeated.Content.ReadAsStringAsync();
            Assert.DoesNotContain("usage", text, StringComparison.Ordinal); // streamed (the last "stream" is true), usage asked for and hidden
            Assert.EndsWith("data: [DONE]\n\n", text, StringComparison.Ordinal);
        }

        Assert.Equal(12, askedForUsage.Count);
        Assert.All(askedForUsage, Assert.True);

        // Twelve requests of up to ~905 tokens each passed a budget of 2000: each was corrected to 7 by the usage chunk.
        using var admin = new HttpClient { BaseAddress = h.Admin };
        await Eventually.TrueAsync(async () => (await admin.GetStringAsync("/metrics")).Split('\n').Any(l =>
                l.StartsWith("gateway_shaping_tokens_total{", StringComparison.Ordinal) && l.Contains("kind=\"actual\"", StringComparison.Ordinal) && l.EndsWith(" 84", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(5), () => "the actual tokens accounted are not 12 x 7");
    }

    [Fact]
    public async Task A_stream_cut_short_is_charged_for_what_was_delivered()
    {
        var options = new GatewayHarness.Options { Edit = With(TokensPolicy(100_000), openaiPolicies: "tpm") };
        options.Sim["Sim:PerTokenMs"] = "30";
        await using var h = await GatewayHarness.StartAsync(options);
        using var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0, ResponseDrainTimeout = TimeSpan.Zero }) { BaseAddress = h.Http };

        var response = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat(maxTokens: 500, stream: true) },
            HttpCompletionOption.ResponseHeadersRead);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var events = 0;
        while (events < 4 && await reader.ReadLineAsync() is { } line)
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                events++;
            }
        }

        response.Dispose(); // cut short after about 4 chunks of 500

        using var admin = new HttpClient { BaseAddress = h.Admin };
        await Eventually.TrueAsync(async () =>
        {
            var line = (await admin.GetStringAsync("/metrics")).Split('\n').FirstOrDefault(l =>
                l.StartsWith("gateway_shaping_tokens_total{", StringComparison.Ordinal) && l.Contains("kind=\"actual\"", StringComparison.Ordinal));
            return line is not null && long.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture) is > 0 and < 50;
        }, TimeSpan.FromSeconds(5), () => "a stream cut short was not charged for the few chunks delivered");
    }

    private static StringContent Chat(int maxTokens, bool stream, bool includeUsage = false) => new(
        $$"""{"model":"m","messages":[{"role":"user","content":"Count to three."}],"max_tokens":{{maxTokens}},"stream":{{(stream ? "true" : "false")}}{{(includeUsage ? ",\"stream_options\":{\"include_usage\":true}" : "")}}}""",
        Encoding.UTF8, "application/json");
}

using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Gateway.Tests.Routing;

/// <summary>
/// Stranger review, issue 14, finding 6: with <c>Gateway:Models</c> configured, the start-up warm-up named no known
/// model, so the gateway answered 404 itself 200 times (no backend warmed) and counted them as client traffic
/// (<c>gateway_requests_total{model="(unknown)",status_code="404"}</c>) with 200 log lines.
/// </summary>
public sealed class StrangerReviewWarmupTests
{
    [Fact]
    public async Task Warm_up_reaches_every_model_cluster_and_is_not_counted_as_client_traffic_stranger_review()
    {
        var seen = new ConcurrentDictionary<string, ConcurrentBag<string>>();
        async Task<TestBackend> StartAsync(string name) => await TestBackend.StartAsync(app =>
            app.MapPost("/v1/warmup", async (HttpRequest request) =>
            {
                using var body = await JsonDocument.ParseAsync(request.Body);
                seen.GetOrAdd(name, _ => []).Add(body.RootElement.GetProperty("model").GetString()!);
                return Results.NotFound();
            }));
        await using var llama = await StartAsync("llama");
        await using var qwen = await StartAsync("qwen");
        var options = new GatewayHarness.Options { HttpBackend = llama.Address, Gateway = { ["Gateway:Admin:WarmupRequests"] = "40" } };
        options.Edit = config =>
        {
            config["ReverseProxy"]!["Clusters"]!["qwen-http"] = new JsonObject
            {
                ["Destinations"] = new JsonObject { ["q"] = new JsonObject { ["Address"] = qwen.Address.ToString() } },
            };
            var gateway = config["Gateway"] as JsonObject ?? [];
            config["Gateway"] = gateway;
            gateway["Models"] = new JsonObject
            {
                ["llama"] = new JsonObject { ["Cluster"] = "model-http", ["Aliases"] = new JsonArray("llama-latest") },
                ["qwen"] = new JsonObject { ["Cluster"] = "qwen-http" },
            };
        };
        var h = await GatewayHarness.StartAsync(options);
        try
        {
            using var admin = new HttpClient { BaseAddress = h.Admin, Timeout = TimeSpan.FromSeconds(30) };
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while ((await admin.GetAsync("/readyz")).StatusCode != HttpStatusCode.OK)
            {
                Assert.True(DateTime.UtcNow < deadline, "never ready");
                await Task.Delay(50);
            }

            // Both model clusters' backends were warmed, each with its own model's name.
            Assert.True(seen.TryGetValue("llama", out var toLlama) && !toLlama.IsEmpty, "llama's backend was not warmed");
            Assert.True(seen.TryGetValue("qwen", out var toQwen) && !toQwen.IsEmpty, "qwen's backend was not warmed");
            Assert.Equal(40, toLlama.Count + toQwen.Count);
            Assert.All(toLlama, static m => Assert.Equal("llama", m));
            Assert.All(toQwen, static m => Assert.Equal("qwen", m));

            var metrics = await admin.GetStringAsync("/metrics");
            var requests = metrics.Split('\n').Where(static l => l.StartsWith("gateway_requests_total{", StringComparison.Ordinal)).ToList();
            Assert.False(requests.Any(static l => l.Contains("model=\"(unknown)\"", StringComparison.Ordinal)), string.Join("\n", requests));
            Assert.Contains(requests, static l => l.Contains("model=\"(warmup)\"", StringComparison.Ordinal));
            var logged = h.Logs.Entries.Where(static l => l.Category == "Gateway.Requests" && l.Message.Contains("/v1/warmup", StringComparison.Ordinal)).Select(static l => l.Message).ToList();
            Assert.True(logged.Count == 0, string.Join("\n", logged.Take(3)));

            // A client's request is still logged and counted under its model (the assertions above are not vacuous).
            using var http = new HttpClient { BaseAddress = h.Http };
            using (await http.PostAsync("/v1/chat/completions", new StringContent("{\"model\":\"qwen\",\"messages\":[]}", System.Text.Encoding.UTF8, "application/json")))
            {
            }

            await TestSupport.Eventually.TrueAsync(() => h.Logs.Entries.Any(static l => l.Category == "Gateway.Requests" && l.Message.Contains("/v1/chat/completions", StringComparison.Ordinal)),
                TimeSpan.FromSeconds(10), () => "the client's request was not logged");
            await TestSupport.Eventually.TrueAsync(async () => (await admin.GetStringAsync("/metrics")).Split('\n')
                .Any(static l => l.StartsWith("gateway_requests_total{", StringComparison.Ordinal) && l.Contains("model=\"qwen\"", StringComparison.Ordinal)),
                TimeSpan.FromSeconds(10), () => "the client's request was not counted under its model");
        }
        finally
        {
            await h.Gateway.DisposeAsync();
        }
    }
}

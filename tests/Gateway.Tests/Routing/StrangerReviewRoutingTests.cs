using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using ModelSim;

namespace Gateway.Tests.Routing;

/// <summary>
/// Findings of a stranger's review of fleet routing (issue 14), reproduced as the reviewer did (/tmp/stranger-routing:
/// gw.json, sess2.py): a model routed by <c>Gateway:Models</c> to an <c>InferenceAware</c> cluster that is not its
/// route's cluster, no recording running. Real ModelSim replicas and a real gateway on loopback.
/// </summary>
public sealed class StrangerReviewRoutingTests
{
    private static async Task<ModelSimServer[]> StartReplicasAsync(int count)
    {
        var replicas = new ModelSimServer[count];
        for (var i = 0; i < count; i++)
        {
            replicas[i] = await ModelSimServer.StartAsync(new Dictionary<string, string?>
            {
                ["Sim:PerTokenMs"] = "1",
                ["Sim:PrefillMs"] = "1",
                ["Sim:AcceptAnyModel"] = "true",
            });
        }

        return replicas;
    }

    /// <summary>The route's cluster stays <c>model-http</c> (the harness's simulator); <c>llama</c> routes to <c>llama-pool</c>, InferenceAware.</summary>
    private static GatewayHarness.Options Fleet(ModelSimServer[] replicas)
    {
        var options = new GatewayHarness.Options();
        options.Edit = config =>
        {
            var destinations = new JsonObject();
            for (var i = 0; i < replicas.Length; i++)
            {
                destinations[$"gpu{i}"] = new JsonObject { ["Address"] = replicas[i].HttpAddress.ToString() };
            }

            config["ReverseProxy"]!["Clusters"]!["llama-pool"] = new JsonObject
            {
                ["LoadBalancingPolicy"] = "InferenceAware",
                ["Metadata"] = new JsonObject { ["MetricsInterval"] = "0.05" },
                ["Destinations"] = destinations,
            };
            var gateway = config["Gateway"] as JsonObject ?? [];
            config["Gateway"] = gateway;
            gateway["Models"] = new JsonObject
            {
                ["llama"] = new JsonObject { ["Cluster"] = "llama-pool", ["Rewrite"] = "meta-llama/Llama-3.1-8B" },
            };
        };
        return options;
    }

    private static async ValueTask DisposeAllAsync(ModelSimServer[] replicas)
    {
        foreach (var r in replicas)
        {
            await r.DisposeAsync();
        }
    }

    private static async Task SendAsync(HttpClient http, string? session, object[] messages)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = JsonContent.Create(new { model = "llama", messages, max_tokens = 4 }),
        };
        if (session is not null)
        {
            request.Headers.Add("x-session-id", session);
        }

        using var response = await http.SendAsync(request);
        Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
    }

    /// <summary>
    /// Stranger review, issue 14, finding 2 (sess2.py; the higress#3810 session term): with no recording running, the
    /// session id was never read when the model classification had already read the body, so 8 of 12 conversations
    /// opened by "hi" changed replica on turn 2. Each of eight conversations must now keep its replica, with nothing
    /// recording. Finding 1: the InferenceAware decisions are counted under the cluster the model routed to
    /// (<c>llama-pool</c>), not the route's (<c>model-http</c>).
    /// </summary>
    [Fact]
    public async Task Session_keeps_a_conversation_on_its_replica_without_a_recording_and_decisions_name_the_models_cluster_stranger_review()
    {
        var replicas = await StartReplicasAsync(4);
        try
        {
            await using var h = await GatewayHarness.StartAsync(Fleet(replicas));
            using var http = new HttpClient { BaseAddress = h.Http };
            const int Conversations = 8;
            for (var c = 0; c < Conversations; c++)
            {
                var before = replicas.Select(static r => r.Stats.Requests).ToArray();
                var session = $"conv-{c}-{Guid.NewGuid():N}";
                await SendAsync(http, session, [new { role = "user", content = "hi" }]);
                await SendAsync(http, session,
                [
                    new { role = "user", content = "hi" },
                    new { role = "assistant", content = $"Hello! I am the assistant of conversation {c}; let me think about how to help you with the fleet, step by step, in detail." },
                    new { role = "user", content = "tell me more" },
                ]);
                var delta = replicas.Select((r, i) => r.Stats.Requests - before[i]).ToArray();
                Assert.True(delta.Count(static d => d == 2) == 1 && delta.Sum() == 2, $"conversation {c}: turns spread as {string.Join(",", delta)}");
            }

            using var admin = new HttpClient { BaseAddress = h.Admin };
            var metrics = await admin.GetStringAsync("/metrics");
            var decisions = metrics.Split('\n').Where(static l => l.StartsWith("gateway_routing_decisions_total{", StringComparison.Ordinal)).ToList();
            Assert.Contains(decisions, static l => l.Contains("cluster=\"llama-pool\"", StringComparison.Ordinal));
            Assert.DoesNotContain(decisions, static l => l.Contains("cluster=\"model-http\"", StringComparison.Ordinal));
        }
        finally
        {
            await DisposeAllAsync(replicas);
        }
    }
}

using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace Gateway.Tests.Shaping;

/// <summary>Shaping configuration for tests: policies on the routes, admission on clusters.</summary>
internal static class ShapingConfig
{
    /// <summary>An Edit that sets <c>Gateway:Shaping</c> and the policies of the routes.</summary>
    public static Action<JsonObject> With(JsonObject shaping, string? openaiPolicies = null, string? grpcPolicies = null, string? wsPolicies = null) => c =>
    {
        c["Gateway"] = new JsonObject { ["Shaping"] = shaping };
        var routes = c["ReverseProxy"]!["Routes"]!;
        if (openaiPolicies is not null)
        {
            routes["openai"]!["Metadata"]!["Policies"] = openaiPolicies;
        }

        if (grpcPolicies is not null)
        {
            routes["grpc-generation"]!["Metadata"]!["Policies"] = grpcPolicies;
        }

        if (wsPolicies is not null)
        {
            routes["websocket-stream"]!["Metadata"]!["Policies"] = wsPolicies;
        }
    };

    public static JsonObject Policies(params (string Name, JsonObject Policy)[] policies)
    {
        var p = new JsonObject();
        foreach (var (name, policy) in policies)
        {
            p[name] = policy;
        }

        return new JsonObject { ["Policies"] = p };
    }

    public static StringContent Generate(int maxTokens = 1, string prompt = "hi") =>
        new($$"""{"prompt":"{{prompt}}","max_tokens":{{maxTokens}}}""", Encoding.UTF8, "application/json");

    /// <summary>Sends requests one after another for <paramref name="duration"/> (each as soon as the previous is answered); counts statuses.</summary>
    public static async Task<Dictionary<HttpStatusCode, int>> HammerAsync(HttpClient client, TimeSpan duration, Func<HttpRequestMessage>? request = null, int concurrency = 4)
    {
        var counts = new Dictionary<HttpStatusCode, int>();
        var until = DateTime.UtcNow + duration;
        var workers = Enumerable.Range(0, concurrency).Select(async _ =>
        {
            while (DateTime.UtcNow < until)
            {
                using var req = request?.Invoke() ?? new HttpRequestMessage(HttpMethod.Post, "/v1/generate") { Content = Generate() };
                using var response = await client.SendAsync(req);
                lock (counts)
                {
                    counts[response.StatusCode] = counts.GetValueOrDefault(response.StatusCode) + 1;
                }
            }
        });
        await Task.WhenAll(workers);
        return counts;
    }
}

using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Gateway.Tests.Tenants;

/// <summary>What a test's backend saw of one request: path and headers (lower-case names).</summary>
internal sealed record SeenRequest(string Path, Dictionary<string, string> Headers);

/// <summary>
/// A backend that records every request's headers and answers like an OpenAI server: JSON, or SSE for
/// <c>"stream": true</c>, and accepts WebSockets (echo) on <c>/v1/stream</c>. Real Kestrel on a free loopback port.
/// </summary>
internal sealed class RecordingBackend : IAsyncDisposable
{
    private readonly TestBackend _backend;

    private RecordingBackend(TestBackend backend, ConcurrentQueue<SeenRequest> seen)
    {
        _backend = backend;
        Seen = seen;
    }

    public ConcurrentQueue<SeenRequest> Seen { get; }

    public Uri Address => _backend.Address;

    public static async Task<RecordingBackend> StartAsync()
    {
        var seen = new ConcurrentQueue<SeenRequest>();
        var backend = await TestBackend.StartAsync(app =>
        {
            app.UseWebSockets();
            app.Run(async context =>
            {
                seen.Enqueue(new SeenRequest(context.Request.Path.Value ?? "/",
                    context.Request.Headers.ToDictionary(static h => h.Key.ToLowerInvariant(), static h => h.Value.ToString())));
                if (context.WebSockets.IsWebSocketRequest)
                {
                    using var socket = await context.WebSockets.AcceptWebSocketAsync();
                    var buffer = new byte[4096];
                    var r = await socket.ReceiveAsync(buffer, CancellationToken.None);
                    if (r.MessageType != System.Net.WebSockets.WebSocketMessageType.Close)
                    {
                        await socket.SendAsync(buffer.AsMemory(0, r.Count), r.MessageType, true, CancellationToken.None);
                        await socket.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
                    }

                    return;
                }

                using var reader = new StreamReader(context.Request.Body);
                var body = await reader.ReadToEndAsync();
                if (body.Contains("\"stream\":true", StringComparison.Ordinal) || body.Contains("\"stream\": true", StringComparison.Ordinal))
                {
                    context.Response.ContentType = "text/event-stream";
                    await context.Response.WriteAsync("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n");
                    return;
                }

                context.Response.ContentType = "application/json";
                await context.Response.WriteAsync("{\"choices\":[{\"message\":{\"content\":\"hi\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}");
            });
        }, HttpProtocols.Http1AndHttp2);
        return new RecordingBackend(backend, seen);
    }

    public ValueTask DisposeAsync() => _backend.DisposeAsync();
}

/// <summary>Keys and configuration for the tenants tests.</summary>
internal static class TenantsConfig
{
    public const string AcmeKey = "acme-test-key-0123456789";
    public const string GlobexKey = "globex-test-key-9876543210";

    /// <summary><c>sha256:</c> and the hex SHA-256 of <paramref name="key"/>, as configuration holds it.</summary>
    public static string Hashed(string key) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <summary>
    /// Gateway settings: <paramref name="mode"/>, tenants acme (all models) and globex (model 'small' only), two models
    /// on the HTTP cluster ('big' and 'small' with alias 'tiny'), and the gRPC cluster's model 'grpc-model'.
    /// </summary>
    public static GatewayHarness.Options Options(string mode = "ApiKey", Uri? httpBackend = null, Action<JsonObject>? edit = null)
    {
        var options = new GatewayHarness.Options { HttpBackend = httpBackend };
        options.Edit = config =>
        {
            config["Gateway"] = new JsonObject
            {
                ["Auth"] = new JsonObject { ["Mode"] = mode, ["FailedAttemptsLimit"] = 1000 },
                ["Models"] = new JsonObject
                {
                    ["big"] = new JsonObject { ["Cluster"] = "model-http", ["GrpcCluster"] = "model-grpc" },
                    ["small"] = new JsonObject { ["Cluster"] = "model-http", ["GrpcCluster"] = "model-grpc", ["Aliases"] = new JsonArray("tiny") },
                },
                ["Tenants"] = new JsonObject
                {
                    ["acme"] = new JsonObject { ["Keys"] = new JsonArray(Hashed(AcmeKey)) },
                    ["globex"] = new JsonObject { ["Keys"] = new JsonArray(Hashed(GlobexKey)), ["Models"] = new JsonArray("tiny") },
                },
            };
            edit?.Invoke(config);
        };
        return options;
    }

    public static StringContent Chat(string model = "big", bool stream = false) =>
        new($"{{\"model\":\"{model}\",\"stream\":{(stream ? "true" : "false")},\"max_tokens\":4,\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}", Encoding.UTF8, "application/json");
}

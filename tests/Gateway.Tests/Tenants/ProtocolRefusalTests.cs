using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Grpc.Core;
using Grpc.Net.Client;
using Inference.V1;
using static Gateway.Tests.Tenants.TenantsConfig;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Issue 13: every refusal of authentication and of the model allow-list on gRPC and WebSocket as well as HTTP/SSE,
/// each in the protocol's own terms, none reaching a backend. gRPC: a missing credential and a wrong one are both
/// UNAUTHENTICATED (pravega#2460: no credentials came back UNKNOWN; grpc-dotnet#571: an HTTP 401 reads as CANCELLED to a
/// gRPC client, so the answer is trailers-only with grpc-status 16). WebSocket: the upgrade itself is answered 401/403,
/// never accepted.
/// </summary>
public sealed class ProtocolRefusalTests
{
    [Fact]
    public async Task Grpc_missing_and_wrong_keys_are_unauthenticated_and_a_good_key_passes()
    {
        await using var gw = await GatewayHarness.StartAsync(Options());
        using var channel = GrpcChannel.ForAddress(gw.Grpc);
        var client = new Generation.GenerationClient(channel);
        var request = new GenerateRequest { Prompt = "hi", MaxTokens = 2 };

        var missing = await Assert.ThrowsAsync<RpcException>(async () => await client.GenerateAsync(request, new Metadata { { "x-model", "big" } }));
        Assert.Equal(StatusCode.Unauthenticated, missing.StatusCode);
        var wrong = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.GenerateAsync(request, new Metadata { { "authorization", "Bearer nope" }, { "x-model", "big" } }));
        Assert.Equal(StatusCode.Unauthenticated, wrong.StatusCode);
        Assert.Equal(0, gw.Sim.Stats.Requests);

        // globex may call 'small' (its alias 'tiny') only.
        var denied = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.GenerateAsync(request, new Metadata { { "authorization", "Bearer " + GlobexKey }, { "x-model", "big" } }));
        Assert.Equal(StatusCode.PermissionDenied, denied.StatusCode);
        Assert.Contains("big", denied.Status.Detail);
        Assert.Equal(0, gw.Sim.Stats.Requests);

        var ok = await client.GenerateAsync(request, new Metadata { { "authorization", "Bearer " + AcmeKey }, { "x-model", "big" } });
        Assert.NotNull(ok);
        var streamed = client.GenerateStream(request, new Metadata { { "authorization", "Bearer " + GlobexKey }, { "x-model", "tiny" } });
        var chunks = 0;
        await foreach (var _ in streamed.ResponseStream.ReadAllAsync())
        {
            chunks++;
        }

        Assert.True(chunks > 0);
        Assert.Equal(2, gw.Sim.Stats.Requests);
    }

    [Fact]
    public async Task Http_and_sse_model_outside_the_allow_list_is_403_model_not_allowed_and_reaches_no_backend()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Options(httpBackend: backend.Address));
        using var client = new HttpClient { BaseAddress = gw.Http };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", GlobexKey);
        foreach (var stream in new[] { false, true })
        {
            using var response = await client.PostAsync("/v1/chat/completions", Chat(model: "big", stream: stream));
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
            using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            Assert.Equal("model_not_allowed", body.RootElement.GetProperty("error").GetProperty("code").GetString());
            Assert.Equal("permission_error", body.RootElement.GetProperty("error").GetProperty("type").GetString());
        }

        Assert.Empty(backend.Seen);
        using (var allowed = await client.PostAsync("/v1/chat/completions", Chat(model: "small")))
        {
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode); // by its name as well as by the alias 'tiny'
        }

        var metrics = await new HttpClient { BaseAddress = gw.Admin }.GetStringAsync("/metrics");
        Assert.Contains(metrics.Split('\n'), l => l.StartsWith("gateway_auth_failures_total{", StringComparison.Ordinal) && l.Contains("reason=\"model_not_allowed\"", StringComparison.Ordinal) && l.EndsWith(" 2", StringComparison.Ordinal));

        // GET /v1/models lists only what the tenant may call; another tenant sees every model.
        var listed = JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()).ToList();
        Assert.Equal(["small", "tiny"], listed);
        using var acme = new HttpClient { BaseAddress = gw.Http };
        acme.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AcmeKey);
        Assert.Equal(3, JsonDocument.Parse(await acme.GetStringAsync("/v1/models")).RootElement.GetProperty("data").GetArrayLength());
    }

    [Fact]
    public async Task WebSocket_upgrades_without_a_good_key_or_for_a_model_not_allowed_are_refused_with_401_and_403()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Options(httpBackend: backend.Address));
        var uri = new Uri($"ws://{gw.WebSocket.Authority}/v1/stream");

        Assert.Equal(HttpStatusCode.Unauthorized, await RefusedAsync(uri, null));
        Assert.Equal(HttpStatusCode.Unauthorized, await RefusedAsync(uri, "wrong"));
        Assert.Equal(HttpStatusCode.Forbidden, await RefusedAsync(new Uri(uri + "?model=big"), GlobexKey));
        Assert.Empty(backend.Seen);

        using var ws = new ClientWebSocket();
        ws.Options.SetRequestHeader("x-api-key", AcmeKey);
        await ws.ConnectAsync(uri, CancellationToken.None);
        await ws.SendAsync(Encoding.UTF8.GetBytes("ping"), WebSocketMessageType.Text, true, CancellationToken.None);
        var buffer = new byte[64];
        var r = await ws.ReceiveAsync(buffer, CancellationToken.None);
        Assert.Equal("ping", Encoding.UTF8.GetString(buffer, 0, r.Count));
        var seen = Assert.Single(backend.Seen);
        Assert.Equal("acme", seen.Headers["x-gateway-tenant"]);
        Assert.False(seen.Headers.ContainsKey("x-api-key"));
    }

    [Fact]
    public async Task Grpc_and_websocket_past_the_failed_attempts_are_refused_429_resource_exhausted()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Options(httpBackend: backend.Address, edit: c => c["Gateway"]!["Auth"]!["FailedAttemptsLimit"] = 2));
        using var channel = GrpcChannel.ForAddress(gw.Grpc);
        var client = new Generation.GenerationClient(channel);
        var request = new GenerateRequest { Prompt = "hi", MaxTokens = 2 };
        for (var i = 0; i < 2; i++)
        {
            var wrong = await Assert.ThrowsAsync<RpcException>(async () => await client.GenerateAsync(request, new Metadata { { "authorization", "Bearer nope" } }));
            Assert.Equal(StatusCode.Unauthenticated, wrong.StatusCode);
        }

        var blocked = await Assert.ThrowsAsync<RpcException>(async () => await client.GenerateAsync(request, new Metadata { { "authorization", "Bearer " + AcmeKey } }));
        Assert.Equal(StatusCode.ResourceExhausted, blocked.StatusCode);
        Assert.Equal((HttpStatusCode)429, await RefusedAsync(new Uri($"ws://{gw.WebSocket.Authority}/v1/stream"), AcmeKey));
        Assert.Equal(0, gw.Sim.Stats.Requests);
        Assert.Empty(backend.Seen);
    }

    private static async Task<HttpStatusCode> RefusedAsync(Uri uri, string? key)
    {
        using var ws = new ClientWebSocket();
        ws.Options.CollectHttpResponseDetails = true;
        if (key is not null)
        {
            ws.Options.SetRequestHeader("Authorization", "Bearer " + key);
        }

        await Assert.ThrowsAsync<WebSocketException>(() => ws.ConnectAsync(uri, CancellationToken.None));
        return ws.HttpStatusCode;
    }
}

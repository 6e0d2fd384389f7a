using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpc.Core;
using Grpc.Net.Client;
using Inference.V1;

namespace Gateway.Tests.Routing;

/// <summary>
/// How an unknown model is refused on each protocol, from a stranger's review of fleet routing (issue 14, reproduced
/// with /tmp/stranger-routing/ws.py and grpcreq.py): a WebSocket upgrade is refused 404 before it is accepted, and the
/// name the client sent is echoed at most 256 characters in every protocol's error. Real gateway, real clients.
/// </summary>
public sealed class StrangerReviewModelErrorTests
{
    private static GatewayHarness.Options Models()
    {
        var options = new GatewayHarness.Options();
        options.Edit = config =>
        {
            var gateway = config["Gateway"] as JsonObject ?? [];
            config["Gateway"] = gateway;
            gateway["Models"] = new JsonObject { ["llama"] = new JsonObject { ["Cluster"] = "model-http" } };
        };
        return options;
    }

    /// <summary>Stranger review, issue 14, finding 4: ?model=nope got 101 then close 1008 with the name dropped; docs say 404.</summary>
    [Fact]
    public async Task A_websocket_upgrade_naming_an_unknown_model_is_refused_404_before_it_is_accepted_stranger_review()
    {
        await using var h = await GatewayHarness.StartAsync(Models());
        using var ws = new ClientWebSocket();
        ws.Options.CollectHttpResponseDetails = true;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await Assert.ThrowsAsync<WebSocketException>(() => ws.ConnectAsync(new Uri($"ws://{h.WebSocket.Authority}/v1/stream?model=nope"), cts.Token));
        Assert.Equal(HttpStatusCode.NotFound, ws.HttpStatusCode);
        Assert.Equal(0, h.Sim.Stats.Requests);

        // The same upgrade as plain HTTP shows the JSON body, naming the model.
        using var http = new HttpClient { BaseAddress = h.WebSocket };
        using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/stream?model=nope");
        request.Headers.Add("Connection", "Upgrade");
        request.Headers.Add("Upgrade", "websocket");
        request.Headers.Add("Sec-WebSocket-Version", "13");
        request.Headers.Add("Sec-WebSocket-Key", Convert.ToBase64String(Guid.NewGuid().ToByteArray()));
        using var response = await http.SendAsync(request, cts.Token);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        var body = await response.Content.ReadAsStringAsync(cts.Token);
        Assert.Contains("model_not_found", body, StringComparison.Ordinal);
        Assert.Contains("`nope`", body, StringComparison.Ordinal);

        // A known model still gets its WebSocket.
        using var ok = new ClientWebSocket();
        await ok.ConnectAsync(new Uri($"ws://{h.WebSocket.Authority}/v1/stream?model=llama"), cts.Token);
        Assert.Equal(WebSocketState.Open, ok.State);
    }

    /// <summary>
    /// Stranger review, issue 14, finding 11: a 30 KB x-model was echoed whole (a 30 KB body), and a gRPC name of 12,000
    /// 'é' made a grpc-message trailer too large to send (an empty reply). The name is echoed at most 256 characters.
    /// </summary>
    [Fact]
    public async Task An_unknown_models_name_is_echoed_bounded_in_http_and_grpc_errors_stranger_review()
    {
        await using var h = await GatewayHarness.StartAsync(Models());
        using var http = new HttpClient { BaseAddress = h.Http };
        var huge = new string('x', 30_000);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = JsonContent.Create(new { model = huge, messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 2 }),
        };
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(text.Length < 2_000, $"{text.Length} characters");
        var message = JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("message").GetString()!;
        Assert.Contains(new string('x', 256) + "…`", message, StringComparison.Ordinal);

        using var channel = GrpcChannel.ForAddress(h.Grpc);
        var client = new Generation.GenerationClient(channel);
        var error = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.GenerateAsync(new GenerateRequest { Prompt = "hi", MaxTokens = 2, Model = new string('é', 12_000) }));
        Assert.Equal(StatusCode.NotFound, error.StatusCode);
        Assert.Contains(new string('é', 256) + "…", error.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0, h.Sim.Stats.Requests);
    }

    /// <summary>
    /// Stranger review, issue 14, finding 10: an empty model was 404 over HTTP but "no model" over gRPC, ?model= and
    /// x-model. Empty now names no model on every protocol: the request goes to its route's cluster.
    /// </summary>
    [Fact]
    public async Task An_empty_model_names_no_model_on_every_protocol_stranger_review()
    {
        await using var h = await GatewayHarness.StartAsync(Models());
        using var http = new HttpClient { BaseAddress = h.Http };
        using (var response = await http.PostAsJsonAsync("/v1/chat/completions", new { model = "", messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 2 }))
        {
            Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        }

        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = JsonContent.Create(new { messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 2 }),
        })
        {
            request.Headers.TryAddWithoutValidation("x-model", "");
            using var response = await http.SendAsync(request);
            Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        }

        using var channel = GrpcChannel.ForAddress(h.Grpc);
        var client = new Generation.GenerationClient(channel);
        var reply = await client.GenerateAsync(new GenerateRequest { Prompt = "hi", MaxTokens = 2, Model = "" });
        Assert.NotNull(reply);

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        using var ws = new ClientWebSocket();
        await ws.ConnectAsync(new Uri($"ws://{h.WebSocket.Authority}/v1/stream?model="), cts.Token);
        Assert.Equal(WebSocketState.Open, ws.State);
        Assert.Equal(3, h.Sim.Stats.Requests); // HTTP twice and gRPC reached the route's cluster (the WebSocket sent nothing yet)
    }
}

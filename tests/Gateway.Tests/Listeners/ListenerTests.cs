using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Inference.V1;

namespace Gateway.Tests.Listeners;

/// <summary>Every protocol reaches the model server through its own listener, and only through it.</summary>
public sealed class ListenerTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Http_listener_forwards_json_generation()
    {
        await using var h = await GatewayHarness.StartAsync();
        using var client = new HttpClient { BaseAddress = h.Http, Timeout = s_timeout };

        using var response = await client.PostAsJsonAsync("/v1/generate", new { prompt = "hello world", max_tokens = 7 });

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(7, body.RootElement.GetProperty("tokens").GetInt32());
        Assert.False(string.IsNullOrEmpty(body.RootElement.GetProperty("text").GetString()));
        Assert.Equal(1, h.Sim.Stats.Completed);
    }

    [Fact]
    public async Task Grpc_listener_forwards_unary_and_server_streaming_calls()
    {
        await using var h = await GatewayHarness.StartAsync();
        using var channel = GrpcChannel.ForAddress(h.Grpc);
        var client = new Generation.GenerationClient(channel);

        var reply = await client.GenerateAsync(new GenerateRequest { Prompt = "hi", MaxTokens = 5, SessionId = "s1" }, deadline: DateTime.UtcNow.Add(s_timeout));
        Assert.Equal(5, reply.Tokens);
        Assert.False(string.IsNullOrEmpty(reply.Text));

        using var call = client.GenerateStream(new GenerateRequest { Prompt = "hi", MaxTokens = 6 }, deadline: DateTime.UtcNow.Add(s_timeout));
        var indexes = new List<int>();
        await foreach (var chunk in call.ResponseStream.ReadAllAsync())
        {
            indexes.Add(chunk.Index);
        }

        Assert.Equal([0, 1, 2, 3, 4, 5], indexes);
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
        Assert.Equal(2, h.Sim.Stats.Completed);
    }

    [Fact]
    public async Task WebSocket_listener_carries_a_session_of_several_requests_on_one_connection()
    {
        await using var h = await GatewayHarness.StartAsync();
        using var ws = new ClientWebSocket();
        using var cts = new CancellationTokenSource(s_timeout);
        await ws.ConnectAsync(new Uri($"ws://{h.WebSocket.Authority}/v1/stream"), cts.Token);

        for (var turn = 1; turn <= 3; turn++)
        {
            var request = JsonSerializer.SerializeToUtf8Bytes(new { prompt = $"turn {turn}", max_tokens = turn + 2 });
            await ws.SendAsync(request, WebSocketMessageType.Text, endOfMessage: true, cts.Token);

            var tokens = 0;
            while (true)
            {
                using var frame = JsonDocument.Parse(await ReceiveTextAsync(ws, cts.Token));
                if (frame.RootElement.TryGetProperty("done", out var done) && done.GetBoolean())
                {
                    break;
                }

                Assert.False(frame.RootElement.TryGetProperty("error", out _), frame.RootElement.ToString());
                tokens++;
            }

            Assert.Equal(turn + 2, tokens);
        }

        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token);
        Assert.Equal(3, h.Sim.Stats.Completed);
    }

    [Fact]
    public async Task Requests_on_a_listener_a_route_does_not_belong_to_are_refused_not_proxied()
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options
        {
            // The gRPC route answers on the gRPC listener only, so HTTPS (HTTP/2) can show a gRPC refusal in gRPC terms.
            Edit = c => c["ReverseProxy"]!["Routes"]!["grpc-generation"]!["Metadata"]!["Listeners"] = "Grpc",
        });
        using var http = new HttpClient { Timeout = s_timeout };

        // REST on the WebSocket and admin listeners: 404 with a JSON error naming the listener.
        foreach (var address in new[] { h.WebSocket, h.Admin })
        {
            using var r = await http.PostAsJsonAsync(new Uri(address, "/v1/generate"), new { prompt = "x", max_tokens = 1 });
            Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
            Assert.Contains("route_not_found", await r.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // REST over HTTP/2 on the gRPC listener: 404.
        using (var h2 = new HttpRequestMessage(HttpMethod.Get, new Uri(h.Grpc, "/v1/models")) { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact })
        using (var r = await http.SendAsync(h2))
        {
            Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
        }

        // A WebSocket upgrade on the HTTP listener, although /v1/{**rest} matches /v1/stream there: refused, so that
        // WebSocket sessions cannot bypass their listener (and its limits).
        using (var ws = new ClientWebSocket())
        {
            var refused = await Assert.ThrowsAsync<WebSocketException>(() => ws.ConnectAsync(new Uri($"ws://{h.Http.Authority}/v1/stream"), CancellationToken.None));
            Assert.Contains("404", refused.Message, StringComparison.Ordinal);
        }

        // A gRPC call on the WebSocket listener (HTTP/1.1 only): the call fails, nothing reaches the model server.
        using (var channel = GrpcChannel.ForAddress(h.WebSocket))
        {
            var client = new Generation.GenerationClient(channel);
            var ex = await Assert.ThrowsAsync<RpcException>(async () => await client.GenerateAsync(new GenerateRequest { Prompt = "x", MaxTokens = 1 }, deadline: DateTime.UtcNow.AddSeconds(10)));
            Assert.NotEqual(StatusCode.OK, ex.StatusCode);
        }

        // A gRPC call for a service the gRPC listener has no route for: UNIMPLEMENTED, in gRPC terms.
        using (var channel = GrpcChannel.ForAddress(h.Grpc))
        {
            var method = new Method<GenerateRequest, GenerateReply>(MethodType.Unary, "other.v1.Other", "Generate", Marshallers.Create(m => m.ToByteArray(), GenerateRequest.Parser.ParseFrom), Marshallers.Create(m => m.ToByteArray(), GenerateReply.Parser.ParseFrom));
            var ex = await Assert.ThrowsAsync<RpcException>(async () => await channel.CreateCallInvoker().AsyncUnaryCall(method, null, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(10)), new GenerateRequest()));
            Assert.Equal(StatusCode.Unimplemented, ex.StatusCode);
        }

        Assert.Equal(0, h.Sim.Stats.Requests);
    }

    [Theory]
    [InlineData(null, true)] // default Gateway:Limits:WebSocketIdleTimeout (1 h) outlasts the cluster's 1 s activity timeout
    [InlineData("00:00:01", false)] // a 1 s WebSocket idle bound closes a session silent for longer
    public async Task A_websocket_session_silent_between_turns_outlives_the_http_activity_timeout_up_to_its_own(string? idleTimeout, bool survives)
    {
        var options = new GatewayHarness.Options { ActivityTimeout = TimeSpan.FromSeconds(1) };
        if (idleTimeout is not null)
        {
            options.Gateway["Gateway:Limits:WebSocketIdleTimeout"] = idleTimeout;
        }

        await using var h = await GatewayHarness.StartAsync(options);
        using var ws = new ClientWebSocket();
        using var cts = new CancellationTokenSource(s_timeout);
        await ws.ConnectAsync(new Uri($"ws://{h.WebSocket.Authority}/v1/stream"), cts.Token);

        await Task.Delay(TimeSpan.FromSeconds(2.5), cts.Token); // a user reading the last answer

        async Task<int> TurnAsync()
        {
            await ws.SendAsync(JsonSerializer.SerializeToUtf8Bytes(new { prompt = "next turn", max_tokens = 3 }), WebSocketMessageType.Text, endOfMessage: true, cts.Token);
            var tokens = 0;
            while (true)
            {
                using var frame = JsonDocument.Parse(await ReceiveTextAsync(ws, cts.Token));
                if (frame.RootElement.TryGetProperty("done", out var done) && done.GetBoolean())
                {
                    return tokens;
                }

                tokens++;
            }
        }

        if (survives)
        {
            Assert.Equal(3, await TurnAsync());
            await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token);
        }
        else
        {
            await Assert.ThrowsAnyAsync<Exception>(TurnAsync);
            Assert.Equal(0, h.Sim.Stats.Completed);
        }
    }

    internal static async Task<string> ReceiveTextAsync(WebSocket ws, CancellationToken cancellationToken)
    {
        var buffer = new byte[8192];
        using var ms = new MemoryStream();
        WebSocketReceiveResult result;
        do
        {
            result = await ws.ReceiveAsync(buffer, cancellationToken);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                throw new InvalidOperationException($"WebSocket closed: {result.CloseStatus} {result.CloseStatusDescription}");
            }

            ms.Write(buffer, 0, result.Count);
        }
        while (!result.EndOfMessage);

        return Encoding.UTF8.GetString(ms.ToArray());
    }
}

using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;
using Grpc.Core;
using Grpc.Net.Client;
using Inference.V1;
using Gateway.Tests.Listeners;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Shaping;

/// <summary>Limits hold on the gRPC and WebSocket listeners too, refusing in each protocol's own terms.</summary>
public sealed class ProtocolLimitTests
{
    [Fact]
    public async Task Grpc_calls_over_the_limit_get_resource_exhausted_naming_the_policy()
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options
        {
            Edit = With(Policies(("grpc-3", new JsonObject { ["Kind"] = "FixedWindow", ["PermitLimit"] = 3, ["Window"] = "00:01:00", ["Partition"] = "Global" })), grpcPolicies: "grpc-3"),
        });
        using var channel = GrpcChannel.ForAddress(h.Grpc);
        var client = new Generation.GenerationClient(channel);

        for (var i = 0; i < 3; i++)
        {
            await client.GenerateAsync(new GenerateRequest { Prompt = "x", MaxTokens = 1 });
        }

        var unary = await Assert.ThrowsAsync<RpcException>(async () => await client.GenerateAsync(new GenerateRequest { Prompt = "x", MaxTokens = 1 }));
        Assert.Equal(StatusCode.ResourceExhausted, unary.StatusCode);
        Assert.Contains("grpc-3", unary.Status.Detail, StringComparison.Ordinal);
        using var call = client.GenerateStream(new GenerateRequest { Prompt = "x", MaxTokens = 1 });
        var streaming = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(StatusCode.ResourceExhausted, streaming.StatusCode);
        Assert.Equal(3, h.Sim.Stats.Requests);
    }

    [Fact]
    public async Task WebSocket_connections_per_key_and_messages_per_connection_are_limited_with_a_close_reason()
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options
        {
            Edit = With(Policies(("ws", new JsonObject { ["Kind"] = "WebSocket", ["PermitLimit"] = 1, ["MessagesPerConnection"] = 2, ["Partition"] = "ClientAddress" })), wsPolicies: "ws"),
        });
        var uri = new Uri($"ws://{h.WebSocket.Authority}/v1/stream");

        using var first = new ClientWebSocket();
        await first.ConnectAsync(uri, CancellationToken.None);

        // A second connection from the same client is over PermitLimit: accepted, then closed with the reason.
        using (var second = new ClientWebSocket())
        {
            await second.ConnectAsync(uri, CancellationToken.None);
            var result = await second.ReceiveAsync(new byte[256], CancellationToken.None);
            Assert.Equal(WebSocketMessageType.Close, result.MessageType);
            Assert.Equal(WebSocketCloseStatus.PolicyViolation, second.CloseStatus);
            Assert.Contains("ws", second.CloseStatusDescription, StringComparison.Ordinal);
        }

        // Two messages pass; the third closes the connection with 1008 and the reason.
        for (var turn = 0; turn < 2; turn++)
        {
            await first.SendAsync(Encoding.UTF8.GetBytes("""{"prompt":"hi","max_tokens":2}"""), WebSocketMessageType.Text, true, CancellationToken.None);
            while (!(await ListenerTests.ReceiveTextAsync(first, CancellationToken.None)).Contains("\"done\":true", StringComparison.Ordinal))
            {
            }
        }

        await first.SendAsync(Encoding.UTF8.GetBytes("""{"prompt":"one too many","max_tokens":2}"""), WebSocketMessageType.Text, true, CancellationToken.None);
        var close = await first.ReceiveAsync(new byte[256], CancellationToken.None);
        Assert.Equal(WebSocketMessageType.Close, close.MessageType);
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, first.CloseStatus);
        Assert.Contains("message limit 2", first.CloseStatusDescription, StringComparison.Ordinal);
        Assert.Equal(2, h.Sim.Stats.Requests); // the third message never reached the model server
    }
}

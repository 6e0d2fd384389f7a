using System.Diagnostics;
using System.Net.WebSockets;
using Grpc.Core;
using Grpc.Net.Client;
using Inference.V1;
using ModelSim.Tests.Support;

namespace ModelSim.Tests.Faults;

/// <summary>Past <c>Sim:CollapseQueue</c> the server collapses: 500 to everything for <c>Sim:CollapseMs</c>.</summary>
public sealed class CollapseTests
{
    [Fact]
    public async Task PassingCollapseQueueAnswers500ToEverythingThenRecovers()
    {
        await using var sim = await Sims.StartAsync(("Slots", 1), ("Queue", 10), ("CollapseQueue", 2), ("CollapseMs", 5000), ("PrefillMs", 1), ("PerTokenMs", 10));
        using var client = Sims.Client(sim);

        // One running and two queued is fine; the request that would make the queue 3 collapses the server.
        var first = Sims.PostAsync(client, "/v1/generate", new { prompt = "a", max_tokens = 300 });
        await sim.WaitAsync(s => s.Inflight == 1);
        var queued = new[] { Sims.PostAsync(client, "/v1/generate", new { prompt = "b", max_tokens = 5 }), Sims.PostAsync(client, "/v1/generate", new { prompt = "c", max_tokens = 5 }) };
        await sim.WaitAsync(s => s.QueueDepth == 2);
        var trigger = await Sims.PostAsync(client, "/v1/generate", new { prompt = "d", max_tokens = 5 });

        Assert.Equal(500, (int)trigger.Response.StatusCode);
        Assert.Equal("server_collapsed", (string)trigger.Body!["error"]!["code"]!);
        Assert.Equal(500, (int)(await first).Response.StatusCode);
        Assert.All(await Task.WhenAll(queued), r => Assert.Equal(500, (int)r.Response.StatusCode));

        // Everything answers 500 during the collapse, whatever the protocol.
        Assert.Equal(500, (int)(await Sims.PostAsync(client, "/v1/chat/completions", new { messages = new[] { new { role = "user", content = "x" } } })).Response.StatusCode);
        Assert.Equal(500, (int)(await client.GetAsync("/health")).StatusCode);
        using var channel = GrpcChannel.ForAddress(sim.GrpcAddress);
        var grpcError = await Assert.ThrowsAsync<RpcException>(async () => await new Generation.GenerationClient(channel).GenerateAsync(new GenerateRequest { Prompt = "x", MaxTokens = 1 }));
        Assert.Equal(StatusCode.Internal, grpcError.StatusCode);
        await using (var ws = await WebSocketClient.ConnectAsync(sim))
        {
            var (_, error) = await ws.RequestAsync(new { prompt = "x", max_tokens = 1 });
            Assert.Equal("server_collapsed", (string)error["code"]!);
        }

        var metrics = await Sims.ScrapeAsync(client);
        Assert.Equal(1, metrics["modelsim_collapses_total"]);
        Assert.Equal(1, metrics["modelsim_collapsed"]);
        Assert.Equal(7, metrics["modelsim_failed_total"]); // 3 in the engine + the trigger + chat, gRPC, WebSocket
        Sims.AssertBalanced(sim.Stats);

    }

    [Fact]
    public async Task AfterCollapseMsItServesAgain()
    {
        await using var sim = await Sims.StartAsync(("PrefillMs", 1), ("PerTokenMs", 1));
        using var client = Sims.Client(sim);
        var start = Stopwatch.GetTimestamp();
        Assert.Equal(200, (int)(await client.PostAsync("/sim/collapse?ms=300", null)).StatusCode);
        Assert.Equal(500, (int)(await client.GetAsync("/health")).StatusCode);
        Assert.Equal(500, (int)(await Sims.PostAsync(client, "/v1/generate", new { prompt = "x", max_tokens = 1 })).Response.StatusCode);

        var remaining = TimeSpan.FromMilliseconds(300) - Stopwatch.GetElapsedTime(start);
        Assert.True(remaining > TimeSpan.Zero, "The checks took longer than the collapse.");
        await Task.Delay(remaining + TimeSpan.FromMilliseconds(30));
        Assert.Equal(200, (int)(await client.GetAsync("/health")).StatusCode);
        Assert.Equal(3, (await Sims.GenerateAsync(client, "after", 3)).Split(' ', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Equal((1L, 1L, 1L), (sim.Stats.Collapses, sim.Stats.Failed, sim.Stats.Completed));
    }

    [Fact]
    public async Task CollapseEndpointCutsOpenStreams()
    {
        await using var sim = await Sims.StartAsync(("Slots", 2), ("PrefillMs", 1), ("PerTokenMs", 10));
        using var client = Sims.Client(sim);
        using var response = await Sims.SendStreamingAsync(client, "/v1/completions", new { prompt = "p", max_tokens = 300, stream = true });
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: ", await reader.ReadLineAsync(), StringComparison.Ordinal);

        Assert.Equal(200, (int)(await client.PostAsync("/sim/collapse?ms=200", null)).StatusCode);

        // A dying server drops the connection: the stream ends without [DONE].
        var rest = new List<string>();
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            while (await reader.ReadLineAsync() is { } line)
            {
                rest.Add(line);
            }

            throw new IOException("The stream ended cleanly.");
        });
        Assert.DoesNotContain("data: [DONE]", rest);
        Assert.Equal((1L, 1L), (sim.Stats.Collapses, sim.Stats.Failed));
    }
}

using System.Net.WebSockets;
using Grpc.Core;
using Grpc.Net.Client;
using Inference.V1;
using ModelSim.Tests.Support;

namespace ModelSim.Tests.Api;

/// <summary>A client that goes away frees its slot or queue place at once and is counted as cancelled.</summary>
public sealed class CancellationTests
{
    // Every request here would run for 5 s; the slot must be back well within a second of the abort.
    private static readonly (string, object)[] s_slowOneSlot = [("Slots", 1), ("Queue", 4), ("PrefillMs", 1), ("PerTokenMs", 10)];
    private static readonly TimeSpan s_freedWithin = TimeSpan.FromSeconds(1);

    [Fact]
    public async Task AbortedHttpRequestFreesItsSlot()
    {
        await using var sim = await Sims.StartAsync(s_slowOneSlot);
        using var client = Sims.Client(sim);
        using var abort = new CancellationTokenSource();
        var request = Sims.PostAsync(client, "/v1/generate", new { prompt = "long", max_tokens = 500 }, abort.Token);
        await sim.WaitAsync(s => s.Inflight == 1);

        await abort.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
        var stats = await sim.WaitAsync(s => s.Inflight == 0 && s.Cancelled == 1, s_freedWithin);
        Sims.AssertBalanced(stats);

        // The slot is usable again at once.
        await Sims.GenerateAsync(client, "next", 2);
    }

    [Fact]
    public async Task AbortedQueuedRequestLeavesTheQueue()
    {
        await using var sim = await Sims.StartAsync(s_slowOneSlot);
        using var client = Sims.Client(sim);
        using var abortRunning = new CancellationTokenSource();
        using var abortQueued = new CancellationTokenSource();
        var running = Sims.PostAsync(client, "/v1/generate", new { prompt = "long", max_tokens = 500 }, abortRunning.Token);
        await sim.WaitAsync(s => s.Inflight == 1);
        var queued = Sims.PostAsync(client, "/v1/generate", new { prompt = "waiting", max_tokens = 500 }, abortQueued.Token);
        await sim.WaitAsync(s => s.QueueDepth == 1);

        await abortQueued.CancelAsync();
        await sim.WaitAsync(s => s.QueueDepth == 0 && s.Cancelled == 1 && s.Inflight == 1, s_freedWithin);
        await abortRunning.CancelAsync();
        await sim.WaitAsync(s => s.Inflight == 0 && s.Cancelled == 2, s_freedWithin);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queued);
        Assert.Equal(0, sim.Stats.Completed);
    }

    [Fact]
    public async Task AbortedSseStreamFreesItsSlot()
    {
        await using var sim = await Sims.StartAsync(s_slowOneSlot);
        using var client = Sims.Client(sim);
        using var abort = new CancellationTokenSource();
        using var response = await Sims.SendStreamingAsync(client, "/v1/chat/completions",
            new { messages = new[] { new { role = "user", content = "long" } }, max_tokens = 500, stream = true }, abort.Token);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(abort.Token));
        Assert.StartsWith("data: ", await reader.ReadLineAsync(abort.Token), StringComparison.Ordinal);

        await abort.CancelAsync();
        response.Dispose();
        var stats = await sim.WaitAsync(s => s.Inflight == 0 && s.Cancelled == 1, s_freedWithin);
        Assert.InRange(stats.GeneratedTokens, 1, 100);
    }

    [Fact]
    public async Task CancelledGrpcCallFreesItsSlot()
    {
        await using var sim = await Sims.StartAsync(s_slowOneSlot);
        using var channel = GrpcChannel.ForAddress(sim.GrpcAddress);
        var client = new Generation.GenerationClient(channel);

        using (var abort = new CancellationTokenSource())
        {
            using var call = client.GenerateStream(new GenerateRequest { Prompt = "long", MaxTokens = 500 }, cancellationToken: abort.Token);
            Assert.True(await call.ResponseStream.MoveNext(abort.Token));
            await abort.CancelAsync();
            await sim.WaitAsync(s => s.Inflight == 0 && s.Cancelled == 1, s_freedWithin);
        }

        using (var abort = new CancellationTokenSource())
        {
            var unary = client.GenerateAsync(new GenerateRequest { Prompt = "long", MaxTokens = 500 }, cancellationToken: abort.Token);
            await sim.WaitAsync(s => s.Inflight == 1);
            await abort.CancelAsync();
            var error = await Assert.ThrowsAsync<RpcException>(async () => await unary);
            Assert.Equal(StatusCode.Cancelled, error.StatusCode);
            await sim.WaitAsync(s => s.Inflight == 0 && s.Cancelled == 2, s_freedWithin);
        }
    }

    [Fact]
    public async Task ClosedOrDroppedWebSocketFreesItsSlot()
    {
        await using var sim = await Sims.StartAsync(s_slowOneSlot);

        await using (var ws = await WebSocketClient.ConnectAsync(sim))
        {
            await ws.SendAsync(new { prompt = "long", max_tokens = 500 });
            Assert.NotNull((await ws.ReceiveAsync())!["token"]);
            await ws.Socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None); // graceful
            await sim.WaitAsync(s => s.Inflight == 0 && s.Cancelled == 1, s_freedWithin);
        }

        await using (var ws = await WebSocketClient.ConnectAsync(sim))
        {
            await ws.SendAsync(new { prompt = "long", max_tokens = 500 });
            Assert.NotNull((await ws.ReceiveAsync())!["token"]);
            ws.Socket.Abort(); // dropped
            await sim.WaitAsync(s => s.Inflight == 0 && s.Cancelled == 2, s_freedWithin);
        }
    }
}

using System.Diagnostics;
using Contracts.Tokens;
using Grpc.Core;
using Grpc.Net.Client;
using Inference.V1;
using ModelSim.Tests.Support;

namespace ModelSim.Tests.Api;

/// <summary>gRPC <c>inference.v1.Generation</c> over h2c on the gRPC listener.</summary>
public sealed class GrpcTests
{
    private static GrpcChannel Channel(ModelSimServer sim) => GrpcChannel.ForAddress(sim.GrpcAddress);

    [Fact]
    public async Task UnaryGeneratesExactlyMaxTokensAndMatchesHttp()
    {
        await using var sim = await Sims.StartAsync(("PrefillMs", 1), ("PerTokenMs", 1));
        using var channel = Channel(sim);
        var client = new Generation.GenerationClient(channel);

        var reply = await client.GenerateAsync(new GenerateRequest { Prompt = "grpc prompt", MaxTokens = 8, SessionId = "s" });

        Assert.Equal(8, reply.Tokens);
        Assert.Equal(8, TokenCounter.Default.Count(reply.Text));
        using var http = Sims.Client(sim);
        Assert.Equal(await Sims.GenerateAsync(http, "grpc prompt", 8), reply.Text);

        var defaulted = await client.GenerateAsync(new GenerateRequest { Prompt = "x" }); // proto3 0 → Sim:DefaultMaxTokens
        Assert.Equal(16, defaulted.Tokens);
        Assert.Equal(3, sim.Stats.Completed);
    }

    [Fact]
    public async Task StreamingSendsOneChunkPerTokenAsProduced()
    {
        await using var sim = await Sims.StartAsync(("PrefillMs", 2), ("PrefillPerTokenMs", 0), ("PerTokenMs", 20));
        using var channel = Channel(sim);
        var client = new Generation.GenerationClient(channel);
        await client.GenerateAsync(new GenerateRequest { Prompt = "warm", MaxTokens = 1 });
        using var http = Sims.Client(sim);
        var before = await Sims.TtftAsync(http);

        var start = Stopwatch.GetTimestamp();
        using var call = client.GenerateStream(new GenerateRequest { Prompt = "stream me", MaxTokens = 15 });
        var chunks = new List<(TokenChunk Chunk, double AtMs)>();
        await foreach (var chunk in call.ResponseStream.ReadAllAsync())
        {
            chunks.Add((chunk, Stopwatch.GetElapsedTime(start).TotalMilliseconds));
        }

        var ttft = await Sims.TtftAsync(http);

        Assert.Equal(Enumerable.Range(0, 15), chunks.Select(c => c.Chunk.Index));
        Assert.Equal(await new Generation.GenerationClient(channel).GenerateAsync(new GenerateRequest { Prompt = "stream me", MaxTokens = 15 }) is { } r ? r.Text : null,
            string.Concat(chunks.Select(c => c.Chunk.Text)));
        // Sent as produced: the last chunk comes at least 14 steps × 20 ms after the first (all at once at the end would be
        // ~0 ms apart); the engine never emits early, so CPU starvation cannot break that lower bound. No wall-clock upper
        // bounds (120 ms to the first chunk, 450 ms for the span were here): at load 20+ on 2 cores the client reads
        // hundreds of ms late. The first token's time is checked on the engine's clock, which the load cannot move: due
        // 2 + 20 = 22 ms after arrival (vllm:time_to_first_token_seconds).
        Assert.True(chunks[^1].AtMs - chunks[0].AtMs >= 250, $"the chunks came {chunks[^1].AtMs - chunks[0].AtMs} ms apart"); // 14 steps × 20 ms
        Assert.Equal(1, ttft.Count - before.Count);
        Assert.Equal(22, ttft.SumMs - before.SumMs, 2);
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Fact]
    public async Task AFullQueueIsResourceExhaustedAtOnce()
    {
        await using var sim = await Sims.StartAsync(("Slots", 1), ("Queue", 0), ("PrefillMs", 1), ("PerTokenMs", 20));
        using var channel = Channel(sim);
        var client = new Generation.GenerationClient(channel);
        using var release = new CancellationTokenSource();
        using var running = client.GenerateAsync(new GenerateRequest { Prompt = "long", MaxTokens = 1000 }, cancellationToken: release.Token);
        await sim.WaitAsync(s => s.Inflight == 1);

        var refused = await Assert.ThrowsAsync<RpcException>(async () => await client.GenerateAsync(new GenerateRequest { Prompt = "more", MaxTokens = 1 }));
        var afterRefusal = sim.Stats;
        Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);

        // "At once" is not a wall-clock bound (500 ms was here; a loaded CI machine can take that long for any call): the
        // refusal came while the slot was still taken (the running call lasts 20 s and is released only below).
        Assert.Equal((1, 0L), (afterRefusal.Inflight, afterRefusal.Completed));

        await release.CancelAsync();
        Assert.Equal(StatusCode.Cancelled, (await Assert.ThrowsAsync<RpcException>(async () => await running)).StatusCode);
        var stats = await sim.WaitAsync(s => s.Inflight == 0);
        Assert.Equal((2L, 1L, 1L), (stats.Requests, stats.Rejected, stats.Cancelled));
    }

    [Fact]
    public async Task InvalidMaxTokensIsInvalidArgument()
    {
        await using var sim = await Sims.StartAsync(("MaxTokensLimit", 10), ("DefaultMaxTokens", 4));
        using var channel = Channel(sim);
        var client = new Generation.GenerationClient(channel);
        foreach (var bad in new[] { -1, 11 })
        {
            var error = await Assert.ThrowsAsync<RpcException>(async () => await client.GenerateAsync(new GenerateRequest { Prompt = "x", MaxTokens = bad }));
            Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
            Assert.Contains($"(was {bad})", error.Status.Detail, StringComparison.Ordinal);
        }

        Assert.Equal((2L, 0L), (sim.Stats.BadRequests, sim.Stats.Requests));
    }

    [Fact]
    public async Task ListenersServeOnlyTheirOwnProtocol()
    {
        await using var sim = await Sims.StartAsync();
        // gRPC listener: HTTP/2 prior knowledge, but the OpenAI API is not there.
        using var h2 = new HttpClient { DefaultRequestVersion = System.Net.HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
        Assert.Equal(404, (int)(await h2.GetAsync(new Uri(sim.GrpcAddress, "/health"))).StatusCode);
        // HTTP listener: HTTP/1.1 only, so a gRPC client cannot reach the service there.
        using var wrong = GrpcChannel.ForAddress(sim.HttpAddress);
        var error = await Assert.ThrowsAsync<RpcException>(async () => await new Generation.GenerationClient(wrong).GenerateAsync(new GenerateRequest { Prompt = "x", MaxTokens = 1 }));
        Assert.NotEqual(StatusCode.OK, error.StatusCode);
        Assert.Equal(0, sim.Stats.Requests);
    }
}

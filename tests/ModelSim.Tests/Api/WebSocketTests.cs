using System.Net.WebSockets;
using Contracts.Tokens;
using ModelSim.Tests.Support;

namespace ModelSim.Tests.Api;

/// <summary><c>/v1/stream</c>: a long chat session of many requests on one connection.</summary>
public sealed class WebSocketTests
{
    [Fact]
    public async Task OneConnectionCarriesManyRequestsInTurn()
    {
        await using var sim = await Sims.StartAsync(("PrefillMs", 1), ("PerTokenMs", 1), ("DefaultMaxTokens", 3));
        await using var ws = await WebSocketClient.ConnectAsync(sim);
        using var http = Sims.Client(sim);

        for (var turn = 1; turn <= 4; turn++)
        {
            var prompt = TokenCounter.BuildPrompt(10 * turn);
            var (tokens, done) = await ws.RequestAsync(new { prompt, max_tokens = 5 + turn, session_id = "chat-1" });

            Assert.Equal(Enumerable.Range(0, 5 + turn), tokens.Select(t => (int)t["index"]!));
            Assert.True((bool)done["done"]!);
            Assert.Equal(5 + turn, (int)done["tokens"]!);
            Assert.Equal(10 * turn, (int)done["prompt_tokens"]!);
            Assert.Equal(await Sims.GenerateAsync(http, prompt, 5 + turn), string.Concat(tokens.Select(t => (string)t["token"]!)));
        }

        var (defaulted, _) = await ws.RequestAsync(new { prompt = "no max_tokens" });
        Assert.Equal(3, defaulted.Count);
        Assert.Equal(4 + 4 + 1, sim.Stats.Completed); // 4 turns, 4 HTTP checks, 1 default
    }

    [Fact]
    public async Task MalformedMessagesGetAnErrorFrameAndTheConnectionStaysUsable()
    {
        await using var sim = await Sims.StartAsync(("PrefillMs", 1), ("PerTokenMs", 1), ("MaxTokensLimit", 50));
        await using var ws = await WebSocketClient.ConnectAsync(sim);

        await ws.SendTextAsync("{not json");
        Assert.Equal("invalid_json", (string)(await ws.ReceiveAsync())!["code"]!);
        await ws.SendAsync(new { max_tokens = 3 });
        Assert.Equal("missing_prompt", (string)(await ws.ReceiveAsync())!["code"]!);
        await ws.SendAsync(new { prompt = "x", max_tokens = 51 });
        var tooMany = (await ws.ReceiveAsync())!;
        Assert.Equal("invalid_max_tokens", (string)tooMany["code"]!);
        Assert.Contains("(was 51)", (string)tooMany["error"]!, StringComparison.Ordinal);
        await ws.Socket.SendAsync(new byte[] { 1, 2, 3 }, WebSocketMessageType.Binary, true, CancellationToken.None);
        Assert.Equal("invalid_message", (string)(await ws.ReceiveAsync())!["code"]!);

        var (tokens, done) = await ws.RequestAsync(new { prompt = "fine", max_tokens = 4 });
        Assert.Equal(4, tokens.Count);
        Assert.True((bool)done["done"]!);
        Assert.Equal((4L, 1L), (sim.Stats.BadRequests, sim.Stats.Requests));
    }

    [Fact]
    public async Task AFullQueueIsAnErrorFrameAndTheConnectionStaysUsable()
    {
        await using var sim = await Sims.StartAsync(("Slots", 1), ("Queue", 0), ("PrefillMs", 1), ("PerTokenMs", 10));
        using var http = Sims.Client(sim);
        using var release = new CancellationTokenSource();
        var holder = Sims.PostAsync(http, "/v1/generate", new { prompt = "hold the slot", max_tokens = 1000 }, release.Token);
        await sim.WaitAsync(s => s.Inflight == 1);
        await using var ws = await WebSocketClient.ConnectAsync(sim);

        var (tokens, refused) = await ws.RequestAsync(new { prompt = "x", max_tokens = 2 });
        Assert.Empty(tokens);
        Assert.Equal("queue_full", (string)refused["code"]!);

        await release.CancelAsync(); // frees the slot
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => holder);
        await sim.WaitAsync(s => s.Inflight == 0);
        var (after, done) = await ws.RequestAsync(new { prompt = "x", max_tokens = 2 });
        Assert.Equal(2, after.Count);
        Assert.True((bool)done["done"]!);
        Assert.Equal(1, sim.Stats.Rejected);
    }
}

using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Replay.Tests.Clients;

/// <summary>
/// Issue 16: the demo's template WebSocket session of three turns ("ws-eve (3 turns)") reached the gateway as one
/// connection per turn: the open model's planner split a connection's turns into one-turn connections, so a recording
/// of the demo held 24 WebSocket exchanges of one message each. A connection's turns are one conversation and stay on
/// one connection.
/// </summary>
public sealed class WebSocketSessionTests
{
    [Fact(Timeout = 60_000)]
    public async Task A_template_session_of_three_turns_is_sent_on_one_connection_per_arrival_and_closed_with_1000()
    {
        var connections = new ConcurrentQueue<List<string>>();
        var closes = new ConcurrentQueue<WebSocketCloseStatus?>();
        await using var app = await StartTurnServerAsync(connections, closes);
        using var dir = TestHost.CreateTempDirectory();
        var template = dir.Combine("ws.json");
        await File.WriteAllTextAsync(template, """
            { "requests": [ { "name": "ws-three", "protocol": "websocket", "path": "/v1/stream", "think_ms": 20,
              "messages": [ { "prompt": "one", "max_tokens": 2 }, { "prompt": "two", "max_tokens": 2 }, { "prompt": "three", "max_tokens": 2 } ] } ] }
            """);
        var ws = app.Urls.Single().Replace("http://", "ws://", StringComparison.Ordinal);

        var run = await TestHost.RunAsync("load", "--template", template, "--rate", "4", "--duration", "1s",
            "--target", app.Urls.Single(), "--ws-target", ws, "--report", dir.Combine("out"), "--progress", "none");

        Assert.True(run.ExitCode == 0, run.ToString());
        var seen = connections.ToList();
        // 4 arrivals: 4 connections, each with the template's three turns in order (before the fix: 4 of one turn each).
        Assert.Equal(4, seen.Count);
        Assert.All(seen, messages => Assert.Equal(["one", "two", "three"], messages.Select(Prompt).ToList()));
        Assert.Equal(4, closes.Count);
        Assert.All(closes, c => Assert.Equal(WebSocketCloseStatus.NormalClosure, c));

        using var report = TestHost.ReadReport(dir.Combine("out"));
        var r = report.RootElement;
        Assert.Equal(12, r.GetProperty("requests").GetInt64()); // each turn is a request
        Assert.Equal(12, r.GetProperty("planned").GetInt64()); // and the plan counted them so
        Assert.Equal(0, r.GetProperty("failures").GetInt64());
        Assert.Equal(12, r.GetProperty("websocket_messages").GetProperty("sent").GetInt64());
    }

    [Fact]
    public void Open_requests_counts_every_turn_of_a_connection_and_stops_before_the_arrival_crossing_the_limit()
    {
        static global::Replay.Sources.PlannedSession Item(int requests) => new()
        {
            Id = "s",
            OriginalId = "s",
            Requests = [requests == 1
                ? new global::Replay.Sources.PlannedRequest { Protocol = global::Replay.Sources.RequestProtocol.Http, PathAndQuery = "/", Route = "r" }
                : new global::Replay.Sources.PlannedRequest
                {
                    Protocol = global::Replay.Sources.RequestProtocol.WebSocket, PathAndQuery = "/ws", Route = "ws",
                    Turns = [.. Enumerable.Range(0, requests).Select(static _ => new global::Replay.Sources.WebSocketTurn(Array.Empty<byte>(), false, 0))],
                }],
        };

        IReadOnlyList<global::Replay.Sources.PlannedSession> pool = [Item(1), Item(3)];
        Assert.Equal(8, global::Replay.Scheduling.Planner.OpenRequests(pool, 4, long.MaxValue)); // 1 + 3 + 1 + 3
        Assert.Equal(9, global::Replay.Scheduling.Planner.OpenRequests(pool, 5, long.MaxValue)); // a fifth arrival adds 1
        Assert.Equal(5, global::Replay.Scheduling.Planner.OpenRequests(pool, 4, 7)); // 1 + 3 + 1; the next (3) would cross 7
        Assert.Equal(4_000_000, global::Replay.Scheduling.Planner.OpenRequests(pool, 2_000_000, long.MaxValue));
        Assert.Equal(3, global::Replay.Scheduling.Planner.OpenRequests([Item(1)], 3, long.MaxValue));
    }

    private static string Prompt(string message)
    {
        using var json = System.Text.Json.JsonDocument.Parse(message);
        return json.RootElement.GetProperty("prompt").GetString()!;
    }

    /// <summary>A conversational server like the simulator's /v1/stream: each message answered by a token and <c>{"done":true}</c>; every connection's messages kept.</summary>
    private static async Task<WebApplication> StartTurnServerAsync(ConcurrentQueue<List<string>> connections, ConcurrentQueue<WebSocketCloseStatus?> closes)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        app.UseWebSockets();
        app.Map("/v1/stream", async (HttpContext ctx) =>
        {
            if (!ctx.WebSockets.IsWebSocketRequest)
            {
                ctx.Response.StatusCode = StatusCodes.Status400BadRequest;
                return;
            }

            using var socket = await ctx.WebSockets.AcceptWebSocketAsync();
            var messages = new List<string>();
            var buffer = new byte[4096];
            while (true)
            {
                var result = await socket.ReceiveAsync(buffer, ctx.RequestAborted);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    closes.Enqueue(result.CloseStatus);
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, ctx.RequestAborted);
                    break;
                }

                messages.Add(Encoding.UTF8.GetString(buffer, 0, result.Count));
                await socket.SendAsync("""{"token":"x"}"""u8.ToArray(), WebSocketMessageType.Text, true, ctx.RequestAborted);
                await socket.SendAsync("""{"done":true}"""u8.ToArray(), WebSocketMessageType.Text, true, ctx.RequestAborted);
            }

            connections.Enqueue(messages);
        });
        await app.StartAsync();
        return app;
    }
}

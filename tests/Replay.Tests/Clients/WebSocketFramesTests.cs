using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using Contracts.Recording;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Replay.Clients;
using Replay.Sources;

namespace Replay.Tests.Clients;

/// <summary>A recorded WebSocket session replays against any server: here a plain echo server with no notion of turns.</summary>
[Collection(RealTimeGroup.Name)]
public sealed class WebSocketFramesTests
{
    private const string Name = "ws-echo";

    private static readonly (double OffsetMs, bool Binary, byte[] Payload)[] s_frames =
    [
        // Offsets three times the spacing a loaded machine may add to one frame, so that frames sent bunched together
        // (the bug) are told from frames sent late (a descheduled sender) by the bound below.
        (30, false, Encoding.UTF8.GetBytes("hello")),
        (180, true, [0, 1, 2, 255, 254, 0x80, 0xC3]), // not UTF-8: must arrive byte for byte
        (330, false, Encoding.UTF8.GetBytes("{\"prompt\": \"é ✓ done\"}")),
        (630, true, [.. Enumerable.Range(0, 3000).Select(static i => (byte)(i * 7))]), // larger than a receive buffer
        (780, false, []),
        (930, false, Encoding.UTF8.GetBytes("{\"done\": false}")),
    ];

    [Fact(Timeout = 60_000)]
    public async Task A_recorded_session_against_an_echo_server_sends_every_frame_intact_with_its_spacing_and_the_recorded_close()
    {
        var received = new ConcurrentQueue<(long At, WebSocketMessageType Type, byte[] Payload)>();
        var closes = new ConcurrentQueue<(int? Code, string? Reason)>();
        var accepts = new ConcurrentQueue<long>();
        await using var app = await StartEchoServerAsync(received, closes, accepts);
        using var dir = TestHost.CreateTempDirectory();
        await WriteRecordingAsync(dir.Combine("store"));

        // The server's own first message runs its code cold (JIT): warm it, so the times it stamps are the wire's.
        using (var warm = new ClientWebSocket())
        {
            await warm.ConnectAsync(new Uri(app.Urls.Single().Replace("http://", "ws://", StringComparison.Ordinal) + "/echo"), CancellationToken.None);
            for (var i = 0; i < 3; i++)
            {
                await warm.SendAsync("warm"u8.ToArray(), WebSocketMessageType.Text, true, CancellationToken.None);
                await warm.ReceiveAsync(new byte[16], CancellationToken.None);
            }

            await warm.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        }

        received.Clear();
        closes.Clear();

        var run = await TestHost.RunAsync("run", "--source", "file:" + dir.Combine("store"), "--recording", Name,
            "--target", app.Urls.Single(), "--report", dir.Combine("out"), "--progress", "none");

        Assert.True(run.ExitCode == 0, run.ToString());
        var messages = received.ToArray();
        Assert.Equal(s_frames.Length, messages.Length);
        for (var i = 0; i < s_frames.Length; i++)
        {
            Assert.Equal(s_frames[i].Binary ? WebSocketMessageType.Binary : WebSocketMessageType.Text, messages[i].Type);
            Assert.Equal(s_frames[i].Payload, messages[i].Payload);
        }

        // Recorded spacing: frame i leaves at start + its offset, where start + the first offset is no earlier than the
        // connection's open (after the server accepted it). So no frame reaches the server before accept + (offset -
        // first offset): none early. Lateness is bounded loosely (this machine may be loaded; a descheduled sender
        // sends late, then catches up with the schedule).
        var accepted = accepts.Last();
        for (var i = 0; i < s_frames.Length; i++)
        {
            var after = (messages[i].At - accepted) * 1000.0 / Stopwatch.Frequency;
            var planned = s_frames[i].OffsetMs - s_frames[0].OffsetMs;
            Assert.True(after >= planned - 1, $"frame {i} reached the server {after:0.#} ms after the upgrade, before its offset {planned} ms");
        }

        var starts = messages.Select((m, i) => (m.At * 1000.0 / Stopwatch.Frequency) - s_frames[i].OffsetMs).ToArray();
        Assert.True(starts.Max() - starts.Min() < 600, $"frames left off their recorded offsets: implied starts {string.Join(", ", starts.Select(x => (x - starts.Min()).ToString("0.#", System.Globalization.CultureInfo.InvariantCulture)))} ms");

        Assert.Equal([(4001, "bye now")], closes.ToArray());

        using var report = TestHost.ReadReport(dir.Combine("out"));
        var r = report.RootElement;
        Assert.Equal(1, r.GetProperty("requests").GetInt64());
        Assert.Equal(1, r.GetProperty("succeeded").GetInt64());
        Assert.Equal(6, r.GetProperty("websocket_messages").GetProperty("sent").GetInt64());
        Assert.Equal(6, r.GetProperty("websocket_messages").GetProperty("received").GetInt64());
        Assert.True(r.GetProperty("latency_ms").GetProperty("max").GetDouble() >= 900, "the connection's latency spans its script");
        Assert.Contains("websocket     6 messages sent, 6 received", run.Output, StringComparison.Ordinal);
    }

    [Fact(Timeout = 60_000)]
    public async Task When_the_server_closed_first_in_the_recording_the_replay_waits_for_its_close_and_answers_it()
    {
        // A server that says goodbye on its own: after two messages it closes with 4000 "done here".
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var app = builder.Build();
        app.UseWebSockets();
        var answered = new TaskCompletionSource<(int? Code, WebSocketState State)>(TaskCreationOptions.RunContinuationsAsynchronously);
        app.Map("/bye", async (HttpContext ctx) =>
        {
            using var socket = await ctx.WebSockets.AcceptWebSocketAsync();
            var buffer = new byte[256];
            for (var n = 0; n < 2;)
            {
                var r = await socket.ReceiveAsync(buffer, CancellationToken.None);
                n += r.EndOfMessage ? 1 : 0;
            }

            await socket.CloseOutputAsync((WebSocketCloseStatus)4000, "done here", CancellationToken.None);
            var reply = await socket.ReceiveAsync(buffer, CancellationToken.None); // the client's answer to our close
            answered.TrySetResult((reply.MessageType == WebSocketMessageType.Close ? (int?)socket.CloseStatus : null, socket.State));
        });
        await app.StartAsync();
        using var dir = TestHost.CreateTempDirectory();
        var units = new List<StreamUnit>
        {
            new() { Dir = Directions.ToServer, OffsetMs = 5, Kind = UnitKinds.Text, Text = "one", Length = 3 },
            new() { Dir = Directions.ToServer, OffsetMs = 25, Kind = UnitKinds.Binary, Base64 = Convert.ToBase64String([1, 2, 3]), Length = 3 },
            new() { Dir = Directions.ToClient, OffsetMs = 30, Kind = UnitKinds.Close, Text = "4000 done here" },
            new() { Dir = Directions.ToServer, OffsetMs = 31, Kind = UnitKinds.Close, Text = "4000" },
        };
        var exchange = new ExchangeRecord
        {
            Recording = "bye",
            Id = "bye-1",
            SessionId = "bye",
            Sequence = 1,
            Protocol = Protocols.WebSocket,
            Streamed = true,
            Listener = "websocket",
            Request = new RecordedRequest { Method = "GET", Path = "/bye" },
            Response = new RecordedResponse { Status = 101 },
            Timing = new RecordedTiming { StartUnixMicros = Recordings.Origin, DurationMs = 31 },
            Units = units,
        };
        await using (var store = new FileRecordingStore(dir.Combine("store")))
        {
            await store.StartAsync("bye", CancellationToken.None);
            await store.AppendAsync("bye", [exchange], Recordings.Sessions([exchange]), CancellationToken.None);
            await store.StopAsync("bye", CancellationToken.None);
        }

        var run = await TestHost.RunAsync("run", "--source", "file:" + dir.Combine("store"), "--recording", "bye", "--target", app.Urls.Single(),
            "--report", dir.Combine("out"), "--progress", "none", "--timeout", "5s");

        Assert.True(run.ExitCode == 0, run.ToString());
        var (code, _) = await answered.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(4000, code); // the client answered the server's close with its status
        using var report = TestHost.ReadReport(dir.Combine("out"));
        Assert.Equal(1, report.RootElement.GetProperty("succeeded").GetInt64());
        Assert.Equal(2, report.RootElement.GetProperty("websocket_messages").GetProperty("sent").GetInt64());
    }

    [Fact]
    public void The_mode_is_turns_when_each_message_is_answered_up_to_a_done_or_error_and_frames_otherwise()
    {
        static StreamUnit In(double t, string text) => new() { Dir = Directions.ToServer, OffsetMs = t, Kind = UnitKinds.Text, Text = text };
        static StreamUnit Out(double t, string text) => new() { Dir = Directions.ToClient, OffsetMs = t, Kind = UnitKinds.Text, Text = text };

        Assert.True(RecordingSource.ShowsTurns([In(1, "{}"), Out(2, "{\"token\":\"a\"}"), Out(3, "{ \"done\" : true }"), In(4, "{}"), Out(5, "{\"error\":\"x\",\"code\":\"queue_full\"}")]));
        Assert.False(RecordingSource.ShowsTurns([In(1, "a"), Out(2, "a"), In(3, "b"), Out(4, "b")])); // an echo: no reply ends a turn
        Assert.False(RecordingSource.ShowsTurns([In(1, "{}"), In(2, "{}"), Out(3, "{\"done\":true}")])); // sent without waiting
        Assert.False(RecordingSource.ShowsTurns([Out(0, "{\"hello\":1}"), In(1, "{}"), Out(3, "{\"done\":true}")])); // the server speaks first
        Assert.False(RecordingSource.ShowsTurns([In(1, "{}"), Out(2, "{\"text\":\"we are \\\"done\\\"\"}")])); // "done" inside a token's text ends nothing

        Assert.Equal(WebSocketReply.Error, WebSocketReplies.Classify("{\"error\":{\"code\":\"rate_limited\"}}"u8, out var code));
        Assert.Equal("rate_limited", code);
        Assert.Equal(WebSocketReply.Part, WebSocketReplies.Classify("not json"u8, out _));

        var close = RecordingSource.Close([In(1, "a"), new StreamUnit { Dir = Directions.ToServer, OffsetMs = 9, Kind = UnitKinds.Close, Text = "4001 bye now" }]);
        Assert.Equal(new WebSocketClose(4001, "bye now", 9, ByServer: false), close);
        Assert.Equal(1000, RecordingSource.Close([new StreamUnit { Dir = Directions.ToClient, OffsetMs = 5, Kind = UnitKinds.Close, Text = "1005" }])!.Code);
        Assert.True(RecordingSource.Close([new StreamUnit { Dir = Directions.ToClient, OffsetMs = 5, Kind = UnitKinds.Close, Text = "1001" }])!.ByServer);
    }

    private static async Task WriteRecordingAsync(string directory)
    {
        var units = new List<StreamUnit>();
        foreach (var (offset, binary, payload) in s_frames)
        {
            foreach (var dir in new[] { Directions.ToServer, Directions.ToClient })
            {
                units.Add(new StreamUnit
                {
                    Dir = dir,
                    OffsetMs = dir == Directions.ToServer ? offset : offset + 2,
                    Kind = binary ? UnitKinds.Binary : UnitKinds.Text,
                    Text = binary ? null : Encoding.UTF8.GetString(payload),
                    Base64 = binary ? Convert.ToBase64String(payload) : null,
                    Length = payload.Length,
                });
            }
        }

        units.Add(new StreamUnit { Dir = Directions.ToServer, OffsetMs = 1000, Kind = UnitKinds.Close, Text = "4001 bye now" });
        units.Add(new StreamUnit { Dir = Directions.ToClient, OffsetMs = 1001, Kind = UnitKinds.Close, Text = "4001 bye now" });
        var exchange = new ExchangeRecord
        {
            Recording = Name,
            Id = "echo-1",
            SessionId = "echo",
            Sequence = 1,
            Protocol = Protocols.WebSocket,
            Streamed = true,
            Listener = "websocket",
            Request = new RecordedRequest { Method = "GET", Path = "/echo", Headers = [new("Upgrade", "websocket"), new("Sec-WebSocket-Key", "abc")] },
            Response = new RecordedResponse { Status = 101 },
            Timing = new RecordedTiming { StartUnixMicros = Recordings.Origin, FirstByteMs = 1, DurationMs = 352 },
            Units = units,
        };
        await using var store = new FileRecordingStore(directory);
        await store.StartAsync(Name, CancellationToken.None);
        await store.AppendAsync(Name, [exchange], Recordings.Sessions([exchange]), CancellationToken.None);
        await store.StopAsync(Name, CancellationToken.None);
    }

    /// <summary>A plain echo server: every message back as it came, its close status answered with the same.</summary>
    internal static async Task<WebApplication> StartEchoServerAsync(ConcurrentQueue<(long At, WebSocketMessageType Type, byte[] Payload)> received, ConcurrentQueue<(int? Code, string? Reason)> closes, ConcurrentQueue<long> accepts)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        app.UseWebSockets();
        app.Map("/echo", async (HttpContext ctx) =>
        {
            accepts.Enqueue(Stopwatch.GetTimestamp());
            using var socket = await ctx.WebSockets.AcceptWebSocketAsync();
            var buffer = new byte[1024];
            var message = new MemoryStream();
            while (true)
            {
                var r = await socket.ReceiveAsync(buffer, CancellationToken.None);
                if (r.MessageType == WebSocketMessageType.Close)
                {
                    closes.Enqueue(((int?)socket.CloseStatus, socket.CloseStatusDescription));
                    await socket.CloseOutputAsync(socket.CloseStatus ?? WebSocketCloseStatus.NormalClosure, socket.CloseStatusDescription, CancellationToken.None);
                    return;
                }

                message.Write(buffer, 0, r.Count);
                if (r.EndOfMessage)
                {
                    var payload = message.ToArray();
                    message.SetLength(0);
                    received.Enqueue((Stopwatch.GetTimestamp(), r.MessageType, payload));
                    await socket.SendAsync(payload, r.MessageType, true, CancellationToken.None);
                }
            }
        });
        await app.StartAsync();
        return app;
    }
}

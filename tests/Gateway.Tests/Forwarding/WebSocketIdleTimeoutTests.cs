using System.Net.WebSockets;
using System.Text;
using Contracts.Wire;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using TestSupport;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// Issue 11 edge: an idle WebSocket closed by the gateway's idle timeout gets a close frame (1001, reason naming the idle
/// timeout) on both sides, is logged as an idle close (not a backend failure) and counted, and
/// <c>Gateway:Limits:WebSocketIdleTimeout</c> works whether it is shorter or longer than the cluster's ActivityTimeout.
/// Public reports of the same need: line/armeria#5696 (close a WebSocket when it is idle, not by a request timeout) and
/// AsyncHttpClient/async-http-client#277 (an idle WebSocket is reported closed with 1001).
/// </summary>
public sealed class WebSocketIdleTimeoutTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData("00:00:01", "00:00:30")] // shorter than the cluster's activity timeout (before: it could only raise it)
    [InlineData("00:00:01.500", "00:00:00.500")] // longer than the cluster's activity timeout
    public async Task An_idle_websocket_is_closed_with_1001_on_both_sides_logged_and_counted_not_a_backend_failure(string idleTimeout, string activityTimeout)
    {
        var backendClose = new TaskCompletionSource<(WebSocketCloseStatus?, string?)>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(app =>
        {
            app.UseWebSockets();
            app.Map("/v1/stream", async (HttpContext context) =>
            {
                using var socket = await context.WebSockets.AcceptWebSocketAsync();
                var buffer = new byte[1024];
                while (true)
                {
                    var r = await socket.ReceiveAsync(buffer, CancellationToken.None);
                    if (r.MessageType == WebSocketMessageType.Close)
                    {
                        backendClose.TrySetResult((socket.CloseStatus, socket.CloseStatusDescription));
                        await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
                        return;
                    }

                    await socket.SendAsync(buffer.AsMemory(0, r.Count), r.MessageType, r.EndOfMessage, CancellationToken.None);
                }
            });
        });
        var options = new GatewayHarness.Options { HttpBackend = backend.Address, ActivityTimeout = TimeSpan.Parse(activityTimeout, System.Globalization.CultureInfo.InvariantCulture) };
        options.Gateway["Gateway:Limits:WebSocketIdleTimeout"] = idleTimeout;
        await using var h = await GatewayHarness.StartAsync(options);
        using var cts = new CancellationTokenSource(s_timeout);
        using var ws = new ClientWebSocket();
        await ws.ConnectAsync(new Uri($"ws://{h.WebSocket.Authority}/v1/stream"), cts.Token);

        // One turn, echoed; then silence on both sides.
        await ws.SendAsync("hello"u8.ToArray(), WebSocketMessageType.Text, endOfMessage: true, cts.Token);
        var buffer = new byte[256];
        var echo = await ws.ReceiveAsync(buffer, cts.Token);
        Assert.Equal("hello", Encoding.UTF8.GetString(buffer, 0, echo.Count));

        var close = await ws.ReceiveAsync(buffer, cts.Token);
        var expectedReason = GatewayCloseReasons.IdleTimeout(TimeSpan.Parse(idleTimeout, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(WebSocketMessageType.Close, close.MessageType);
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, ws.CloseStatus); // 1001 going away
        Assert.Equal(expectedReason, ws.CloseStatusDescription);
        Assert.True(GatewayCloseReason.TryParse(ws.CloseStatusDescription, out var parsed));
        Assert.Equal(GatewayErrorCodes.IdleTimeout, parsed!.Code);

        var (backendStatus, backendReason) = await backendClose.Task.WaitAsync(cts.Token);
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, backendStatus);
        Assert.Equal(expectedReason, backendReason);

        await Eventually.TrueAsync(() => Task.FromResult(h.Logs.Entries.Any(e => e.EventId.Id == 2101)), TimeSpan.FromSeconds(5), () => "no idle-close log line");
        using var admin = new HttpClient { BaseAddress = h.Admin };
        await Eventually.TrueAsync(async () => (await admin.GetStringAsync("/metrics")).Split('\n').Any(l =>
                l.StartsWith("gateway_websocket_idle_closed", StringComparison.Ordinal) && l.Contains("route=\"websocket-stream\"", StringComparison.Ordinal) && l.EndsWith(" 1", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(5), () => "the idle close was not counted");
        await Eventually.TrueAsync(() => Task.FromResult(h.Logs.Entries.Any(e => e.EventId.Id == 1001 && e.Message.Contains("/v1/stream", StringComparison.Ordinal))),
            TimeSpan.FromSeconds(5), () => "the exchange did not complete");
        Assert.DoesNotContain(h.Logs.Entries, e => e.EventId.Id == 2001); // no "Backend failure" warning
        Assert.DoesNotContain(h.Logs.Entries, e => e.Level >= Microsoft.Extensions.Logging.LogLevel.Warning && e.Category.StartsWith("Gateway", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_websocket_that_keeps_talking_outlives_its_idle_timeout()
    {
        await using var backend = await TestBackend.StartAsync(app =>
        {
            app.UseWebSockets();
            app.Map("/v1/stream", async (HttpContext context) =>
            {
                using var socket = await context.WebSockets.AcceptWebSocketAsync();
                var buffer = new byte[1024];
                while (true)
                {
                    var r = await socket.ReceiveAsync(buffer, CancellationToken.None);
                    if (r.MessageType == WebSocketMessageType.Close)
                    {
                        await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
                        return;
                    }

                    await socket.SendAsync(buffer.AsMemory(0, r.Count), r.MessageType, r.EndOfMessage, CancellationToken.None);
                }
            });
        });
        var options = new GatewayHarness.Options { HttpBackend = backend.Address, ActivityTimeout = TimeSpan.FromSeconds(30) };
        options.Gateway["Gateway:Limits:WebSocketIdleTimeout"] = "00:00:01";
        await using var h = await GatewayHarness.StartAsync(options);
        using var cts = new CancellationTokenSource(s_timeout);
        using var ws = new ClientWebSocket();
        await ws.ConnectAsync(new Uri($"ws://{h.WebSocket.Authority}/v1/stream"), cts.Token);

        // A turn every 400 ms for 2.5 s: never silent for the idle timeout.
        var buffer = new byte[256];
        for (var i = 0; i < 6; i++)
        {
            await ws.SendAsync(Encoding.UTF8.GetBytes($"turn {i}"), WebSocketMessageType.Text, endOfMessage: true, cts.Token);
            var r = await ws.ReceiveAsync(buffer, cts.Token);
            Assert.Equal(WebSocketMessageType.Text, r.MessageType);
            await Task.Delay(TimeSpan.FromMilliseconds(400), cts.Token);
        }

        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", cts.Token);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, ws.CloseStatus);
        Assert.DoesNotContain(h.Logs.Entries, e => e.EventId.Id == 2101);
    }
}

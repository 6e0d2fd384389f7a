using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Replay.Tests.EndToEnd;

/// <summary>A WebSocket target slow to accept the upgrade: its time is latency, not the generator's schedule lag.</summary>
/// <remarks>In the real-time group: its schedule-lag bound (100 ms) is not for a run beside other tests on two cores.</remarks>
[Collection(RealTimeGroup.Name)]
public sealed class WebSocketLagTests
{
    [Fact(Timeout = 60_000)]
    public async Task A_slow_upgrade_counts_in_latency_not_in_schedule_lag()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var app = builder.Build();
        app.UseWebSockets();
        app.Map("/v1/stream", async (HttpContext ctx) =>
        {
            await Task.Delay(300); // the upgrade waits, as in a gateway's admission queue
            using var socket = await ctx.WebSockets.AcceptWebSocketAsync();
            var buffer = new byte[4096];
            while (true)
            {
                var r = await socket.ReceiveAsync(buffer, CancellationToken.None);
                if (r.MessageType == WebSocketMessageType.Close)
                {
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                    return;
                }

                if (r.EndOfMessage)
                {
                    await socket.SendAsync("{\"text\":\"a\",\"index\":0}"u8.ToArray(), WebSocketMessageType.Text, true, CancellationToken.None);
                    await socket.SendAsync("{\"done\":true}"u8.ToArray(), WebSocketMessageType.Text, true, CancellationToken.None);
                }
            }
        });
        await app.StartAsync();
        var address = app.Urls.Single().Replace("http://", "ws://", StringComparison.Ordinal);
        using var dir = TestHost.CreateTempDirectory();

        var run = await TestHost.RunAsync("load", "--protocol", "websocket", "--target", address, "--rate", "10", "--duration", "2s",
            "--max-tokens", "1", "--report", dir.Path, "--progress", "none");

        Assert.True(run.ExitCode == 0, run.ToString());
        using var report = TestHost.ReadReport(dir.Path);
        var r = report.RootElement;
        Assert.Equal(20, r.GetProperty("succeeded").GetInt64());
        Assert.True(r.GetProperty("latency_ms").GetProperty("p50").GetDouble() >= 290, r.GetProperty("latency_ms").ToString()); // the wait is the target's
        Assert.True(r.GetProperty("schedule_lag_ms").GetProperty("p99").GetDouble() < 100, r.GetProperty("schedule_lag_ms").ToString()); // not the generator's
    }
}

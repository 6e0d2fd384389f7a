using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Replay.Tests.Clients;

/// <summary>
/// Found by a newcomer's review of issue 15: a WebSocket upgrade answered with HTTP 429 (a gateway's rate limit) was
/// counted as a connection error, where the same 429 over HTTP is a refusal; the refusals-by-limit table missed it.
/// </summary>
public sealed class WebSocketRefusalTests
{
    [Fact(Timeout = 60_000)]
    public async Task An_upgrade_answered_429_is_a_refusal_by_the_named_limit_not_a_connection_error()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var app = builder.Build();
        app.Map("/v1/stream", static (HttpContext ctx) =>
        {
            ctx.Response.StatusCode = StatusCodes.Status429TooManyRequests;
            ctx.Response.Headers["x-gateway-limit"] = "ws-per-key";
            ctx.Response.Headers["x-gateway-error"] = "rate_limited";
            ctx.Response.Headers.RetryAfter = "1";
            return Task.CompletedTask;
        });
        await app.StartAsync();
        var address = app.Urls.Single().Replace("http://", "ws://", StringComparison.Ordinal);
        using var dir = TestHost.CreateTempDirectory();

        var run = await TestHost.RunAsync("load", "--protocol", "websocket", "--target", address, "--rate", "5", "--duration", "1s",
            "--max-tokens", "1", "--report", dir.Path, "--progress", "none");

        using var report = TestHost.ReadReport(dir.Path);
        var r = report.RootElement;
        var failures = r.GetProperty("failures_by_kind");
        Assert.True(failures.GetProperty("refused").GetInt64() == 5, run.ToString());
        Assert.Equal(0, failures.GetProperty("connection").GetInt64());
        Assert.Equal(5, r.GetProperty("refused_by_limit").GetProperty("ws-per-key").GetProperty("count").GetInt64());
    }
}

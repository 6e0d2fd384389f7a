using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Replay.Tests.Clients;

/// <summary>Streams are parsed (SSE, then JSON per event), not byte-matched: a server that spaces its JSON is measured as well as one that does not.</summary>
[Collection(RealTimeGroup.Name)]
public sealed class SseParsingTests
{
    [Fact(Timeout = 60_000)]
    public async Task Spaced_json_events_count_as_tokens_with_ttft_and_unparseable_events_are_counted_and_reported_once()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var app = builder.Build();
        app.MapPost("/v1/chat/completions", async (HttpContext ctx) =>
        {
            ctx.Response.ContentType = "text/event-stream";
            await Write(ctx, "data: {\"id\": \"c1\", \"choices\": [{\"index\": 0, \"delta\": {\"role\": \"assistant\", \"content\": \"\"}}]}\n\n");
            for (var i = 0; i < 5; i++)
            {
                await Task.Delay(3);
                await Write(ctx, $"data: {{\"id\": \"c1\", \"choices\": [{{\"index\": 0, \"delta\": {{\"content\": \"tok{i} \"}}}}]}}\r\n\r\n");
            }

            await Write(ctx, "data: not json at all\n\n");
            await Write(ctx, "data: [DONE]\n\n");
        });
        await app.StartAsync();
        using var dir = TestHost.CreateTempDirectory();

        var run = await TestHost.RunAsync("load", "--target", app.Urls.Single(), "--stream", "--rate", "20", "--duration", "1s",
            "--max-tokens", "5", "--report", dir.Path, "--progress", "none");

        Assert.True(run.ExitCode == 0, run.ToString());
        using var report = TestHost.ReadReport(dir.Path);
        var r = report.RootElement;
        Assert.Equal(20, r.GetProperty("succeeded").GetInt64());
        Assert.Equal(20, r.GetProperty("ttft_ms").GetProperty("count").GetInt64());
        Assert.Equal(20 * 4, r.GetProperty("itl_ms").GetProperty("count").GetInt64());
        Assert.Equal(20 * 5, r.GetProperty("output_tokens").GetInt64());
        Assert.Equal(20, r.GetProperty("unparseable_events").GetProperty("count").GetInt64());
        Assert.Equal("not json at all", r.GetProperty("unparseable_events").GetProperty("first").GetString());
        Assert.Single(run.Output.Split('\n'), static l => l.Contains("unparseable", StringComparison.Ordinal));
        Assert.Contains("20 stream event(s) neither JSON nor [DONE]", run.Output, StringComparison.Ordinal);
    }

    private static async Task Write(HttpContext ctx, string text)
    {
        await ctx.Response.Body.WriteAsync(Encoding.UTF8.GetBytes(text));
        await ctx.Response.Body.FlushAsync();
    }
}

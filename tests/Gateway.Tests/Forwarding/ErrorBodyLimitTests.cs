using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using TestSupport;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// Issue 11 edge: error bodies relayed from the backend are capped at <c>Gateway:Limits:MaxErrorBodyBytes</c> (default
/// 1 MiB; before, a 20 MB error body passed whole), the client gets a complete response, and successful bodies are
/// never capped. No public bug report mirrors it exactly; the closest is envoyproxy/envoy#17340 (limiting the size of an
/// upstream's response).
/// </summary>
public sealed class ErrorBodyLimitTests
{
    private const int Large = 20 * 1000 * 1000;
    private const int OneMiB = 1024 * 1024;

    [Fact]
    public async Task A_20_MB_error_body_reaches_the_client_cut_at_1_MiB_and_complete()
    {
        await using var backend = await StartBackendAsync();
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { HttpBackend = backend.Address });
        using var http = new HttpClient { BaseAddress = h.Http, Timeout = TimeSpan.FromSeconds(60) };

        // With a Content-Length: lowered to the cap.
        using (var declared = await http.GetAsync("/v1/error?length=declared"))
        {
            Assert.Equal(HttpStatusCode.InternalServerError, declared.StatusCode);
            Assert.Equal(OneMiB, declared.Content.Headers.ContentLength);
            var body = await declared.Content.ReadAsByteArrayAsync(); // throws if the response were cut off
            Assert.Equal(OneMiB, body.Length);
            Assert.All(body, static b => Assert.Equal((byte)'e', b));
        }

        // Chunked: the first MiB, then a well-formed end.
        using (var chunked = await http.GetAsync("/v1/error?length=chunked"))
        {
            Assert.Equal(HttpStatusCode.InternalServerError, chunked.StatusCode);
            Assert.True(chunked.Headers.TransferEncodingChunked);
            Assert.Equal(OneMiB, (await chunked.Content.ReadAsByteArrayAsync()).Length);
        }

        // The connection is reusable and a success passes whole.
        using (var ok = await http.GetAsync("/v1/ok"))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            Assert.Equal(Large, (await ok.Content.ReadAsByteArrayAsync()).Length);
        }

        Assert.Contains(h.Logs.Entries, static e => e.EventId.Id == 2103 && e.Message.Contains("model-http", StringComparison.Ordinal));
        using var admin = new HttpClient { BaseAddress = h.Admin };
        await Eventually.TrueAsync(async () => (await admin.GetStringAsync("/metrics")).Contains("gateway_backend_error_bodies_truncated", StringComparison.Ordinal),
            TimeSpan.FromSeconds(5), () => "the truncation is not counted");
    }

    [Fact]
    public async Task A_configured_cap_applies_and_a_small_error_body_passes_whole()
    {
        await using var backend = await StartBackendAsync();
        var options = new GatewayHarness.Options { HttpBackend = backend.Address };
        options.Gateway["Gateway:Limits:MaxErrorBodyBytes"] = "1000";
        await using var h = await GatewayHarness.StartAsync(options);
        using var http = new HttpClient { BaseAddress = h.Http, Timeout = TimeSpan.FromSeconds(60) };

        using var cut = await http.GetAsync("/v1/error?length=declared");
        Assert.Equal(HttpStatusCode.InternalServerError, cut.StatusCode);
        Assert.Equal(1000, (await cut.Content.ReadAsByteArrayAsync()).Length);

        using var small = await http.GetAsync("/v1/small-error");
        Assert.Equal(HttpStatusCode.BadRequest, small.StatusCode);
        Assert.Equal("""{"error":{"message":"bad","code":"x"}}""", await small.Content.ReadAsStringAsync());
    }

    private static Task<TestBackend> StartBackendAsync() => TestBackend.StartAsync(static app =>
    {
        app.MapGet("/v1/error", static async (HttpContext context) =>
        {
            context.Response.StatusCode = 500;
            context.Response.ContentType = "text/plain";
            if (context.Request.Query["length"] == "declared")
            {
                context.Response.ContentLength = Large;
            }

            await WriteAsync(context, (byte)'e');
        });
        app.MapGet("/v1/ok", static async (HttpContext context) =>
        {
            context.Response.ContentLength = Large;
            await WriteAsync(context, (byte)'o');
        });
        app.MapGet("/v1/small-error", static (HttpContext context) =>
        {
            context.Response.StatusCode = 400;
            context.Response.ContentType = "application/json";
            return context.Response.WriteAsync("""{"error":{"message":"bad","code":"x"}}""");
        });
    });

    private static async Task WriteAsync(HttpContext context, byte fill)
    {
        var chunk = new byte[64 * 1024];
        Array.Fill(chunk, fill);
        for (var sent = 0; sent < Large; sent += chunk.Length)
        {
            await context.Response.Body.WriteAsync(chunk.AsMemory(0, Math.Min(chunk.Length, Large - sent)), context.RequestAborted);
        }
    }
}

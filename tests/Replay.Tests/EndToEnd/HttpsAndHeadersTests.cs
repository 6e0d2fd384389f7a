using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TestSupport;

namespace Replay.Tests.EndToEnd;

/// <summary>HTTPS with HTTP/2, header overrides and drops, and refusals by a limit, against a test's own Kestrel endpoint.</summary>
[Collection(RealTimeGroup.Name)]
public sealed class HttpsAndHeadersTests
{
    [Fact(Timeout = 60_000)]
    public async Task Https_with_http2_sends_every_request_over_http2_with_the_header_overrides_and_drops()
    {
        using var dir = TestHost.CreateTempDirectory();
        using var certificate = TestCertificates.CreateSelfSigned(dir.Path);
        var seen = new ConcurrentQueue<(string Protocol, string? ApiKey, string? Session, string? Scheme)>();
        await using var app = await StartAsync(
            listen => listen.UseHttps(certificate),
            HttpProtocols.Http1AndHttp2,
            context =>
            {
                if (context.Request.Path == "/metrics")
                {
                    // The run's look for a model server's prefix-cache counters (not a load request): none here.
                    context.Response.StatusCode = 404;
                    return Task.CompletedTask;
                }

                seen.Enqueue((context.Request.Protocol, context.Request.Headers["x-api-key"], context.Request.Headers["x-session-id"], context.Request.Scheme));
                return context.Response.WriteAsync("{\"usage\":{\"completion_tokens\":3}}");
            });
        var template = dir.Combine("t.json");
        await File.WriteAllTextAsync(template, """{ "requests": [ { "headers": { "x-session-id": "s1", "x-api-key": "prod" }, "body": { "messages": [] } } ] }""");

        var result = await TestHost.RunAsync([
            "load", "--template", template, "--target", Address(app, "https"), "--http2", "--insecure", "--rate", "20", "--duration", "1s",
            "--header", "x-api-key: staging", "--drop-header", "x-session-id", "--report", dir.Combine("out"), "--progress", "none"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(20, seen.Count);
        Assert.All(seen, static s =>
        {
            Assert.Equal("HTTP/2", s.Protocol);
            Assert.Equal("https", s.Scheme);
            Assert.Equal("staging", s.ApiKey);
            Assert.True(string.IsNullOrEmpty(s.Session));
        });
        using var report = TestHost.ReadReport(dir.Combine("out"));
        Assert.Equal(60, report.RootElement.GetProperty("output_tokens").GetInt64());
    }

    [Fact(Timeout = 60_000)]
    public async Task A_certificate_that_is_not_trusted_fails_as_a_connection_error_without_insecure()
    {
        using var dir = TestHost.CreateTempDirectory();
        using var certificate = TestCertificates.CreateSelfSigned(dir.Path);
        await using var app = await StartAsync(listen => listen.UseHttps(certificate), HttpProtocols.Http1, static c => c.Response.WriteAsync("{}"));

        var result = await TestHost.RunAsync(["load", "--target", Address(app, "https"), "--rate", "10", "--duration", "1s", "--report", dir.Path, "--progress", "none"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        using var report = TestHost.ReadReport(dir.Path);
        Assert.Equal(10, report.RootElement.GetProperty("failures_by_kind").GetProperty("connection").GetInt64());
    }

    [Fact(Timeout = 60_000)]
    public async Task Refusals_by_a_limit_are_told_apart_from_other_error_statuses()
    {
        var n = 0;
        await using var app = await StartAsync(null, HttpProtocols.Http1, context =>
        {
            switch (Interlocked.Increment(ref n) % 4)
            {
                case 0:
                    context.Response.StatusCode = 429;
                    break;
                case 1:
                    context.Response.StatusCode = 503;
                    context.Response.Headers["x-gateway-error"] = "admission_queue_full";
                    break;
                case 2:
                    context.Response.StatusCode = 503;
                    break;
                default:
                    context.Response.StatusCode = 200;
                    break;
            }

            return Task.CompletedTask;
        });
        using var dir = TestHost.CreateTempDirectory();

        var result = await TestHost.RunAsync(["load", "--target", Address(app, "http"), "--rate", "40", "--duration", "1s", "--report", dir.Path, "--progress", "none", "--assert", "refused<1"]);

        Assert.True(result.ExitCode == 1, result.ToString());
        using var report = TestHost.ReadReport(dir.Path);
        var kinds = report.RootElement.GetProperty("failures_by_kind");
        Assert.Equal(20, kinds.GetProperty("refused").GetInt64());
        Assert.Equal(10, kinds.GetProperty("status").GetInt64());
        Assert.Equal(10, report.RootElement.GetProperty("by_status").GetProperty("429").GetProperty("count").GetInt64());
        Assert.Equal(20, report.RootElement.GetProperty("by_status").GetProperty("503").GetProperty("count").GetInt64());
    }

    private static async Task<WebApplication> StartAsync(Action<ListenOptions>? configure, HttpProtocols protocols, RequestDelegate handler)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Configuration.Sources.Clear();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrelHttpsConfiguration();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, listen =>
        {
            listen.Protocols = protocols;
            configure?.Invoke(listen);
        }));
        var app = builder.Build();
        app.Run(handler);
        await app.StartAsync();
        return app;
    }

    private static string Address(WebApplication app, string scheme)
    {
        var port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
        return $"{scheme}://127.0.0.1:{port}";
    }
}

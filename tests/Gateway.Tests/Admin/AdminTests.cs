using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using TestSupport;

namespace Gateway.Tests.Admin;

/// <summary>The admin listener: liveness, readiness that follows the backend, Prometheus metrics.</summary>
public sealed class AdminTests
{
    [Fact]
    public async Task Healthz_readyz_and_metrics_report_the_gateway_and_its_backend()
    {
        var h = await GatewayHarness.StartAsync();
        try
        {
            using var admin = new HttpClient { BaseAddress = h.Admin, Timeout = TimeSpan.FromSeconds(30) };
            using var http = new HttpClient { BaseAddress = h.Http, Timeout = TimeSpan.FromSeconds(30) };

            Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync("/healthz")).StatusCode);
            using (var ready = await admin.GetAsync("/readyz"))
            {
                Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
                using var body = JsonDocument.Parse(await ready.Content.ReadAsStringAsync());
                Assert.Equal("ready", body.RootElement.GetProperty("status").GetString());
            }

            for (var i = 0; i < 3; i++)
            {
                (await http.PostAsJsonAsync("/v1/generate", new { prompt = "m", max_tokens = 1 })).EnsureSuccessStatusCode();
            }

            await Eventually.TrueAsync(async () => (await admin.GetStringAsync("/metrics")).Split('\n').Any(l =>
                    l.StartsWith("gateway_requests_total{", StringComparison.Ordinal) && l.Contains("route=\"openai\"", StringComparison.Ordinal)
                    && l.Contains("listener=\"http\"", StringComparison.Ordinal) && l.Contains("status_code=\"200\"", StringComparison.Ordinal) && l.EndsWith(" 3", StringComparison.Ordinal)),
                TimeSpan.FromSeconds(5), () => "gateway_requests_total does not count the 3 requests on route openai");

            // The model server goes away: readiness follows (its cache holds a result for a second).
            await h.Sim.DisposeAsync();
            await Eventually.TrueAsync(async () => (await admin.GetAsync("/readyz")).StatusCode == HttpStatusCode.ServiceUnavailable,
                TimeSpan.FromSeconds(5), () => "readyz stayed ready without a backend");
        }
        finally
        {
            await h.Gateway.DisposeAsync();
        }
    }

    [Fact]
    public async Task Readyz_waits_for_the_start_up_warm_up_through_the_proxy_path()
    {
        var warmups = 0;
        await using var backend = await TestBackend.StartAsync(app =>
        {
            app.MapPost("/v1/warmup", () => { Interlocked.Increment(ref warmups); return Results.NotFound(); });
            app.MapGet("/health", () => Results.Ok());
        });
        var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { HttpBackend = backend.Address, Gateway = { ["Gateway:Admin:WarmupRequests"] = "40" } });
        try
        {
            using var admin = new HttpClient { BaseAddress = h.Admin, Timeout = TimeSpan.FromSeconds(30) };
            string status;
            do
            {
                using var ready = await admin.GetAsync("/readyz");
                using var body = JsonDocument.Parse(await ready.Content.ReadAsStringAsync());
                status = body.RootElement.GetProperty("status").GetString()!;
                Assert.True(status is "warming_up" or "ready", $"readyz said {status}");
                Assert.Equal(status == "ready" ? HttpStatusCode.OK : HttpStatusCode.ServiceUnavailable, ready.StatusCode);
                if (status == "warming_up")
                {
                    await Task.Delay(20);
                }
            }
            while (status != "ready");

            // Every warm-up request went through the route (/v1/{**rest} -> /v1/warmup) to the backend before ready.
            Assert.Equal(40, Volatile.Read(ref warmups));
            Assert.Contains(h.Logs.Entries, l => l.Message.StartsWith("Warm-up: 40 requests", StringComparison.Ordinal));
        }
        finally
        {
            await h.Gateway.DisposeAsync();
        }
    }
}

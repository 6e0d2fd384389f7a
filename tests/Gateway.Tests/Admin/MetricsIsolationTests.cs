using System.Net.Http.Json;
using TestSupport;

namespace Gateway.Tests.Admin;

/// <summary>Two gateways in one process keep their metrics apart (each /metrics shows only its own traffic).</summary>
public sealed class MetricsIsolationTests
{
    [Fact]
    public async Task Each_gateway_in_a_process_reports_only_its_own_requests()
    {
        await using var a = await GatewayHarness.StartAsync();
        await using var b = await GatewayHarness.StartAsync();
        using var http = new HttpClient { BaseAddress = a.Http };
        for (var i = 0; i < 4; i++)
        {
            (await http.PostAsJsonAsync("/v1/generate", new { prompt = "a", max_tokens = 1 })).EnsureSuccessStatusCode();
        }

        using var adminA = new HttpClient { BaseAddress = a.Admin };
        using var adminB = new HttpClient { BaseAddress = b.Admin };
        await Eventually.TrueAsync(async () => (await adminA.GetStringAsync("/metrics")).Contains("route=\"openai\"", StringComparison.Ordinal),
            TimeSpan.FromSeconds(5), () => "gateway A does not report its requests");
        var metricsB = await adminB.GetStringAsync("/metrics");
        Assert.DoesNotContain(metricsB.Split('\n'), l => l.StartsWith("gateway_requests_total{", StringComparison.Ordinal) && l.Contains("route=\"openai\"", StringComparison.Ordinal));
    }
}

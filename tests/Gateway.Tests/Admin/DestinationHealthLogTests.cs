using ModelSim;
using TestSupport;

namespace Gateway.Tests.Admin;

/// <summary>A model server that goes down and comes back is logged once each way, by the gateway, without YARP's per-probe stack traces.</summary>
public sealed class DestinationHealthLogTests
{
    [Fact(Timeout = 60_000)]
    public async Task A_backend_going_down_and_coming_back_is_logged_once_each_way()
    {
        var port = FreePort.Next(); // nothing listens there yet: the active health check fails
        var options = new GatewayHarness.Options { HttpBackend = new Uri($"http://127.0.0.1:{port}/") };
        options.Gateway["ReverseProxy:Clusters:model-http:HealthCheck:Active:Enabled"] = "true";
        options.Gateway["ReverseProxy:Clusters:model-http:HealthCheck:Active:Interval"] = "00:00:00.300";
        options.Gateway["ReverseProxy:Clusters:model-http:HealthCheck:Active:Timeout"] = "00:00:00.500";
        options.Gateway["ReverseProxy:Clusters:model-http:HealthCheck:Active:Policy"] = "ConsecutiveFailures";
        options.Gateway["ReverseProxy:Clusters:model-http:HealthCheck:Active:Path"] = "/health";
        options.Gateway["Logging:LogLevel:Yarp.ReverseProxy.Health"] = "Error"; // as appsettings.json ships it
        await using var h = await GatewayHarness.StartAsync(options);

        await Eventually.TrueAsync(() => Entries(h, 5101).Count == 1, TimeSpan.FromSeconds(15), () => "the destination was never logged unhealthy");
        await using var sim = await ModelSimServer.StartAsync(new Dictionary<string, string?> { ["Sim:Http:Port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        await Eventually.TrueAsync(() => Entries(h, 5102).Count == 1, TimeSpan.FromSeconds(15), () => "the destination was never logged healthy again");

        await Task.Delay(1500); // several probe intervals with the backend up: no repeated line
        var unhealthy = Assert.Single(Entries(h, 5101));
        Assert.Contains("model-http", unhealthy.Message, StringComparison.Ordinal);
        Assert.Contains($"127.0.0.1:{port}", unhealthy.Message, StringComparison.Ordinal);
        Assert.Single(Entries(h, 5102));
        Assert.DoesNotContain(h.Logs.Entries, e => e.Category.StartsWith("Yarp.ReverseProxy.Health", StringComparison.Ordinal) && e.Level == Microsoft.Extensions.Logging.LogLevel.Warning);
    }

    private static List<CapturedLogs.Entry> Entries(GatewayHarness h, int eventId) =>
        [.. h.Logs.Entries.Where(e => e.EventId.Id == eventId && e.Category.EndsWith("DestinationHealthLog", StringComparison.Ordinal))];
}

using System.Net;
using System.Text.Json.Nodes;
using Gateway.Shaping;
using Microsoft.Extensions.DependencyInjection;
using TestSupport;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Shaping;

/// <summary>Limits change on a configuration reload, under live traffic, without errors; a bad reload keeps the last good limits.</summary>
[Collection(SerialTests.Name)]
public sealed class ReloadTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("gw-reload-").FullName;

    private static string Config(int permitLimit) => new JsonObject
    {
        ["Gateway"] = new JsonObject
        {
            ["Shaping"] = new JsonObject
            {
                ["Policies"] = new JsonObject
                {
                    ["live"] = new JsonObject { ["Kind"] = "FixedWindow", ["PermitLimit"] = permitLimit, ["Window"] = "00:00:01", ["Partition"] = "Global" },
                },
            },
        },
    }.ToJsonString();

    [Fact]
    public async Task A_reload_changes_a_limit_under_live_traffic_and_a_bad_one_keeps_the_last_good_limits()
    {
        var file = Path.Combine(_dir, "shaping.json");
        await File.WriteAllTextAsync(file, Config(5));
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options
        {
            ConfigFile = file,
            Edit = c => c["ReverseProxy"]!["Routes"]!["openai"]!["Metadata"]!["Policies"] = "live",
        });
        var runtime = h.Gateway.Services.GetRequiredService<ShapingRuntime>();
        using var client = new HttpClient { BaseAddress = h.Http };

        var traffic = HammerAsync(client, TimeSpan.FromSeconds(7)); // live traffic through every change
        await Task.Delay(TimeSpan.FromSeconds(2));
        var low = runtime.Current.Policies["live"].Options.PermitLimit;

        await File.WriteAllTextAsync(file, Config(40));
        await Eventually.TrueAsync(() => runtime.Current.Policies["live"].Options.PermitLimit == 40, TimeSpan.FromSeconds(10), () => "the new limit was not applied");

        await File.WriteAllTextAsync(file, Config(-3)); // invalid: refused, 40 stays
        await Eventually.TrueAsync(() => runtime.Refused > 0, TimeSpan.FromSeconds(10), () => "the bad reload was not seen");
        Assert.Equal(40, runtime.Current.Policies["live"].Options.PermitLimit);
        Assert.Contains(h.Logs.Entries, e => e.Message.Contains("Gateway:Shaping:Policies:live:PermitLimit must be > 0 (was -3)", StringComparison.Ordinal));

        var counts = await traffic;
        Assert.Equal(5, low);
        Assert.Equal(counts.Values.Sum(), counts.GetValueOrDefault(HttpStatusCode.OK) + counts.GetValueOrDefault(HttpStatusCode.TooManyRequests)); // no errors, no dropped connection
        Assert.True(counts.GetValueOrDefault(HttpStatusCode.OK) > 5 * 7, $"the raised limit did not admit more: {string.Join(", ", counts)}");
    }

    [Fact]
    public async Task A_reload_with_a_bad_destination_is_refused_and_traffic_keeps_the_last_good_routes()
    {
        var file = Path.Combine(_dir, "routes.json");
        await File.WriteAllTextAsync(file, Config(1000));
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { ConfigFile = file });
        using var client = new HttpClient { BaseAddress = h.Http };
        (await client.PostAsync("/v1/generate", Body())).EnsureSuccessStatusCode();

        var bad = JsonNode.Parse(Config(1000))!.AsObject();
        bad["ReverseProxy"] = new JsonObject
        {
            ["Clusters"] = new JsonObject
            {
                ["model-http"] = new JsonObject
                {
                    ["Destinations"] = new JsonObject { ["sim"] = new JsonObject { ["Address"] = "ftp://127.0.0.1:21/" } },
                },
            },
        };
        await File.WriteAllTextAsync(file, bad.ToJsonString());

        const string Expected = "ReverseProxy:Clusters:model-http:Destinations:sim:Address must be an absolute http:// or https:// URI";
        await Eventually.TrueAsync(
            () => h.Logs.Entries.Any(e => e.Message.Contains(Expected, StringComparison.Ordinal) || (e.Exception?.ToString().Contains(Expected, StringComparison.Ordinal) ?? false)),
            TimeSpan.FromSeconds(10), () => "the bad destination was not reported");
        for (var i = 0; i < 5; i++)
        {
            using var response = await client.PostAsync("/v1/generate", Body());
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        static StringContent Body() => new("""{"prompt":"still routed","max_tokens":1}""", System.Text.Encoding.UTF8, "application/json");
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

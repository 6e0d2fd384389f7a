using System.Net;
using System.Text.Json.Nodes;
using Gateway.Configuration;
using Gateway.Shaping;
using Microsoft.Extensions.DependencyInjection;
using TestSupport;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Shaping;

/// <summary>
/// Limits change on a configuration reload, under live traffic, without errors; a bad reload (a file that does not
/// parse, or a value that does not validate) keeps the last good limits, routes and admission, and is logged once.
/// </summary>
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
        var gate = h.Gateway.Services.GetRequiredService<ConfigurationGate>();
        using var client = new HttpClient { BaseAddress = h.Http };

        var traffic = HammerAsync(client, TimeSpan.FromSeconds(7)); // live traffic through every change
        await Task.Delay(TimeSpan.FromSeconds(2));
        var low = runtime.Current.Policies["live"].Options.PermitLimit;

        await File.WriteAllTextAsync(file, Config(40));
        await Eventually.TrueAsync(() => runtime.Current.Policies["live"].Options.PermitLimit == 40, TimeSpan.FromSeconds(10), () => "the new limit was not applied");

        await File.WriteAllTextAsync(file, Config(-3)); // invalid: refused, 40 stays
        await Eventually.TrueAsync(() => gate.Refused > 0, TimeSpan.FromSeconds(10), () => "the bad reload was not seen");
        Assert.Equal(40, runtime.Current.Policies["live"].Options.PermitLimit);
        Assert.Contains(h.Logs.Entries, e => e.Message.Contains("Gateway:Shaping:Policies:live:PermitLimit must be > 0 (was -3)", StringComparison.Ordinal));

        var counts = await traffic;
        Assert.Equal(5, low);
        Assert.Equal(counts.Values.Sum(), counts.GetValueOrDefault(HttpStatusCode.OK) + counts.GetValueOrDefault(HttpStatusCode.TooManyRequests)); // no errors, no dropped connection
        Assert.True(counts.GetValueOrDefault(HttpStatusCode.OK) > 5 * 7, $"the raised limit did not admit more: {string.Join(", ", counts)}");
    }

    /// <summary>The shaping profile of the file: a policy, the route that names it, and admission on the HTTP cluster.</summary>
    private static string Profile(int permitLimit) => new JsonObject
    {
        ["Gateway"] = new JsonObject
        {
            ["Shaping"] = new JsonObject
            {
                ["Policies"] = new JsonObject
                {
                    ["per-key"] = new JsonObject { ["Kind"] = "FixedWindow", ["PermitLimit"] = permitLimit, ["Window"] = "00:10:00", ["Partition"] = "Global" },
                },
                ["Admission"] = new JsonObject { ["model-http"] = new JsonObject { ["MaxInFlight"] = 8 } },
            },
        },
        ["ReverseProxy"] = new JsonObject
        {
            ["Routes"] = new JsonObject { ["openai"] = new JsonObject { ["Metadata"] = new JsonObject { ["Policies"] = "per-key" } } },
        },
    }.ToJsonString();

    [Fact]
    public async Task A_file_that_does_not_parse_keeps_everything_and_the_good_file_restores_it_in_one_step()
    {
        await using var profiled = await StartWithProfileAsync("profile.json");
        var (h, runtime, gate, client, file) = profiled;

        // Malformed JSON: .NET's file provider would drop every key of the file (policy, route metadata, admission).
        await File.WriteAllTextAsync(file, """{ "Gateway": { "Shaping": """);
        await Eventually.TrueAsync(() => h.Logs.Entries.Any(e => e.EventId.Id == 1101), TimeSpan.FromSeconds(10), () => "the file that does not parse was not reported");
        await Task.Delay(TimeSpan.FromSeconds(1)); // time for any (wrong) reload to land
        var refusal = Assert.Single(h.Logs.Entries, e => e.EventId.Id == 1101);
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Error, refusal.Level);
        Assert.Contains(file, refusal.Message, StringComparison.Ordinal);
        using (var limited = await PostAsync(client))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode); // the window's count, kept
            Assert.Equal("per-key", limited.Headers.GetValues("x-gateway-limit").Single());
        }

        Assert.Equal(3, runtime.Current.Policies["per-key"].Options.PermitLimit);
        Assert.True(runtime.Current.Clusters.ContainsKey("model-http"), "admission was dropped");
        Assert.Equal(0, runtime.Applied);
        Assert.DoesNotContain(h.Logs.Entries, e => e.Message.Contains("Shaping configuration reloaded", StringComparison.Ordinal));

        // The good file back, with a new limit: in force in one step (shaping and the route), nothing else logged as an error.
        await File.WriteAllTextAsync(file, Profile(5));
        await Eventually.TrueAsync(() => runtime.Current.Policies["per-key"].Options.PermitLimit == 5, TimeSpan.FromSeconds(10), () => "the restored file was not applied");
        await Eventually.TrueAsync(async () =>
        {
            using var response = await PostAsync(client);
            return response.StatusCode == HttpStatusCode.OK
                && response.Headers.TryGetValues("x-ratelimit-limit-requests", out var limit) && limit.Single() == "5";
        }, TimeSpan.FromSeconds(10), () => "the route did not apply the new limit");
        var restored = await StatusesAsync(client, 5);
        Assert.Equal([200, 200, 200, 200, 429], restored); // 1 + 4 = the new limit of 5, then refused

        // An invalid value: refused, logged once naming the key, and the limit of 5 (and its count) stays.
        await File.WriteAllTextAsync(file, Profile(-1));
        await Eventually.TrueAsync(() => gate.Refused > 0, TimeSpan.FromSeconds(10), () => "the invalid value was not refused");
        await Task.Delay(TimeSpan.FromSeconds(1));
        var invalid = Assert.Single(h.Logs.Entries, e => e.EventId.Id == 1102);
        Assert.Contains("Gateway:Shaping:Policies:per-key:PermitLimit must be > 0 (was -1)", invalid.Message, StringComparison.Ordinal);
        Assert.Equal(5, runtime.Current.Policies["per-key"].Options.PermitLimit);
        var kept = await StatusesAsync(client, 1);
        Assert.Equal([429], kept);

        Assert.Equal([1101, 1102], h.Logs.Entries.Where(e => e.Level >= Microsoft.Extensions.Logging.LogLevel.Error).Select(e => e.EventId.Id));
    }

    [Fact]
    public async Task A_deleted_file_keeps_its_last_settings_until_it_is_restored()
    {
        await using var profiled = await StartWithProfileAsync("deleted.json");
        var (h, runtime, gate, client, file) = profiled;

        File.Delete(file); // .NET drops the file's keys: without the gate, the policy and admission would be gone
        await Eventually.TrueAsync(() => gate.Refused > 0, TimeSpan.FromSeconds(10), () => "the missing file was not refused");
        var refusal = Assert.Single(h.Logs.Entries, e => e.EventId.Id == 1102);
        Assert.Contains("is missing", refusal.Message, StringComparison.Ordinal);
        Assert.Equal(3, runtime.Current.Policies["per-key"].Options.PermitLimit);
        Assert.True(runtime.Current.Clusters.ContainsKey("model-http"), "admission was dropped");
        var kept = await StatusesAsync(client, 1);
        Assert.Equal([429], kept); // the limit and its window's count stay

        await File.WriteAllTextAsync(file, Profile(5)); // restored, with a new limit: applied in one step
        await Eventually.TrueAsync(() => runtime.Current.Policies["per-key"].Options.PermitLimit == 5, TimeSpan.FromSeconds(10), () => "the restored file was not applied");
    }

    [Fact]
    public async Task A_reload_that_yarp_would_reject_is_refused_whole_and_the_renamed_policy_is_not_half_applied()
    {
        await using var profiled = await StartWithProfileAsync("yarp.json");
        var (h, runtime, gate, client, file) = profiled;

        // The policy renamed (the route follows) and, in the same edit, a transform YARP does not know: the start-up
        // rules accept it; YARP would refuse the route after shaping had dropped 'per-key'.
        var edited = System.Text.Json.Nodes.JsonNode.Parse(Profile(3))!.AsObject();
        var policies = edited["Gateway"]!["Shaping"]!["Policies"]!.AsObject();
        var policy = policies["per-key"]!.DeepClone();
        policies.Remove("per-key");
        policies["pk2"] = policy;
        var route = edited["ReverseProxy"]!["Routes"]!["openai"]!.AsObject();
        route["Metadata"]!["Policies"] = "pk2";
        route["Transforms"] = new System.Text.Json.Nodes.JsonArray(new JsonObject { ["ResponseHeaderr"] = "x", ["Set"] = "y" });
        await File.WriteAllTextAsync(file, edited.ToJsonString());

        await Eventually.TrueAsync(() => gate.Refused > 0, TimeSpan.FromSeconds(10), () => "the reload YARP would reject was applied");
        var refusal = Assert.Single(h.Logs.Entries, e => e.EventId.Id == 1102);
        Assert.Contains("ReverseProxy:Routes:openai", refusal.Message, StringComparison.Ordinal);
        Assert.True(runtime.Current.Policies.ContainsKey("per-key"), "shaping took half of the refused change");
        var kept = await StatusesAsync(client, 1);
        Assert.Equal([429], kept); // the old limit is still in force on the route
        Assert.DoesNotContain(h.Logs.Entries, e => e.Category.StartsWith("Yarp", StringComparison.Ordinal) && e.Level >= Microsoft.Extensions.Logging.LogLevel.Error);
    }

    /// <summary>A gateway whose watched file holds <see cref="Profile"/>(3), the limit checked in force (3 admitted, the 4th refused).</summary>
    private async Task<ProfiledGateway> StartWithProfileAsync(string fileName)
    {
        var file = Path.Combine(_dir, fileName);
        await File.WriteAllTextAsync(file, Profile(3));
        var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { ConfigFile = file });
        var profiled = new ProfiledGateway(h, h.Gateway.Services.GetRequiredService<ShapingRuntime>(), h.Gateway.Services.GetRequiredService<ConfigurationGate>(),
            new HttpClient { BaseAddress = h.Http }, file);
        try
        {
            var before = await StatusesAsync(profiled.Client, 4);
            Assert.Equal([200, 200, 200, 429], before);
            return profiled;
        }
        catch
        {
            await profiled.DisposeAsync();
            throw;
        }
    }

    private sealed record ProfiledGateway(GatewayHarness Harness, ShapingRuntime Runtime, ConfigurationGate Gate, HttpClient Client, string File) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            Client.Dispose();
            await Harness.DisposeAsync();
        }
    }

    private static async Task<int[]> StatusesAsync(HttpClient client, int count)
    {
        var statuses = new int[count];
        for (var i = 0; i < count; i++)
        {
            using var response = await PostAsync(client);
            statuses[i] = (int)response.StatusCode;
        }

        return statuses;
    }

    private static Task<HttpResponseMessage> PostAsync(HttpClient client) =>
        client.PostAsync("/v1/generate", new StringContent("""{"prompt":"shaped","max_tokens":1}""", System.Text.Encoding.UTF8, "application/json"));

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

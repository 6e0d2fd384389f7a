using System.Net;
using System.Text.Json.Nodes;
using Gateway.Configuration;
using Gateway.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TestSupport;

namespace Gateway.Tests.Configuration;

/// <summary>
/// Every numeric and duration key, given 0, -1, a huge value and two days, at start-up and on a reload: the gateway
/// never crashes. A value it refuses is refused with a message naming the key (start-up: a configuration error;
/// reload: one log line, the last good configuration kept); a value it takes leaves it serving (no 500).
/// </summary>
[Collection(SerialTests.Name)]
public sealed class ExtremeValueTests
{
    private const string P = "Gateway:Shaping:Policies";
    private const string A = "Gateway:Shaping:Admission:model-http";

    /// <summary>(key, is a duration).</summary>
    private static readonly (string Key, bool Duration)[] s_keys =
    [
        ("Gateway:Listeners:Http:Port", false),
        ("Gateway:Limits:MaxRequestBodyBytes", false), ("Gateway:Limits:WebSocketIdleTimeout", true),
        ("Gateway:Limits:MaxRequestHeadersTotalBytes", false), ("Gateway:Limits:MaxRequestHeaderCount", false), ("Gateway:Limits:MaxErrorBodyBytes", false),
        ("Gateway:Recording:MaxBodyBytes", false), ("Gateway:Recording:MaxUnits", false), ("Gateway:Recording:QueueCapacity", false),
        ("Gateway:Recording:BatchSize", false), ("Gateway:Recording:RetryFor", true), ("Gateway:Recording:Sessions:MaxInspectBytes", false),
        ("Gateway:Recording:Sessions:IdleTimeout", true), ("Gateway:Recording:Sampling:Rate", false), ("Gateway:Recording:Retention:MaxLength", false),
        ("Gateway:Recording:Retention:MaxAge", true), ("Gateway:Recording:Retention:Ttl", true),
        ("Gateway:Shaping:Instances", false), ("Gateway:Shaping:DefaultMaxTokens", false), ("Gateway:Shaping:MaxInspectBytes", false),
        ("Gateway:Shaping:RefusalLogInterval", true),
        ($"{P}:tb:TokenLimit", false), ($"{P}:tb:TokensPerPeriod", false), ($"{P}:tb:ReplenishmentPeriod", true), ($"{P}:tb:QueueLimit", false),
        ($"{P}:fw:PermitLimit", false), ($"{P}:fw:Window", true),
        ($"{P}:sw:PermitLimit", false), ($"{P}:sw:Window", true), ($"{P}:sw:SegmentsPerWindow", false),
        ($"{P}:conc:PermitLimit", false), ($"{P}:tokens:TokensPerMinute", false),
        ($"{P}:ws:PermitLimit", false), ($"{P}:ws:MessagesPerConnection", false),
        ($"{A}:MaxInFlight", false), ($"{A}:QueueLimit", false), ($"{A}:QueueTimeout", true),
        ($"{A}:Adaptive:MinLimit", false), ($"{A}:Adaptive:MaxLimit", false), ($"{A}:Adaptive:Tolerance", false), ($"{A}:Adaptive:Smoothing", false),
        ($"{A}:Adaptive:SampleWindow", true), ($"{A}:Adaptive:MinRttInterval", true), ($"{A}:Adaptive:MinRttSamples", false),
        ($"{A}:CircuitBreaker:FailureRatio", false), ($"{A}:CircuitBreaker:MinimumThroughput", false),
        ($"{A}:CircuitBreaker:SamplingDuration", true), ($"{A}:CircuitBreaker:BreakDuration", true),
        ("ReverseProxy:Routes:openai:Timeout", true), ("ReverseProxy:Clusters:model-http:HttpRequest:ActivityTimeout", true),
        ("ReverseProxy:Clusters:model-http:HttpClient:MaxConnectionsPerServer", false),
        ("ReverseProxy:Clusters:model-http:Metadata:ConnectTimeout", true), ("ReverseProxy:Clusters:model-http:Metadata:PooledConnectionLifetime", true),
        ("ReverseProxy:Clusters:model-http:Metadata:PooledConnectionIdleTimeout", true),
    ];

    private static IEnumerable<(string Key, string Value)> Cases() =>
        s_keys.SelectMany(static k => new[] { "0", "-1", k.Duration ? "10675199.02:48:05" : "2147483647", "2.00:00:00" }.Select(v => (k.Key, v)));

    /// <summary>Every feature whose keys are tried is on: a policy of each kind on the route, adaptive admission and the breaker.</summary>
    private static string Config(string recordings) => new JsonObject
    {
        ["Gateway"] = new JsonObject
        {
            ["Recording"] = new JsonObject { ["Directory"] = recordings, ["Retention"] = new JsonObject { ["MaxLength"] = 1000, ["MaxAge"] = "1.00:00:00", ["Ttl"] = "1.00:00:00" } },
            ["Shaping"] = new JsonObject
            {
                ["Policies"] = new JsonObject
                {
                    ["tb"] = new JsonObject { ["Kind"] = "TokenBucket", ["TokenLimit"] = 100, ["TokensPerPeriod"] = 100, ["QueueLimit"] = 1 },
                    ["fw"] = new JsonObject { ["Kind"] = "FixedWindow", ["PermitLimit"] = 100 },
                    ["sw"] = new JsonObject { ["Kind"] = "SlidingWindow", ["PermitLimit"] = 100 },
                    ["conc"] = new JsonObject { ["Kind"] = "Concurrency", ["PermitLimit"] = 100 },
                    ["tokens"] = new JsonObject { ["Kind"] = "Tokens", ["TokensPerMinute"] = 1_000_000 },
                    ["ws"] = new JsonObject { ["Kind"] = "WebSocket", ["PermitLimit"] = 10, ["MessagesPerConnection"] = 100 },
                },
                ["Admission"] = new JsonObject
                {
                    ["model-http"] = new JsonObject
                    {
                        ["Adaptive"] = new JsonObject { ["Enabled"] = true },
                        ["CircuitBreaker"] = new JsonObject { ["Enabled"] = true },
                    },
                },
            },
        },
        ["ReverseProxy"] = new JsonObject
        {
            ["Routes"] = new JsonObject
            {
                ["openai"] = new JsonObject
                {
                    ["ClusterId"] = "model-http",
                    ["Match"] = new JsonObject { ["Path"] = "/v1/{**rest}" },
                    ["Timeout"] = "00:01:00",
                    ["Metadata"] = new JsonObject { ["Policies"] = "tb,fw,sw,conc,tokens" },
                },
                ["ws"] = new JsonObject { ["ClusterId"] = "model-http", ["Match"] = new JsonObject { ["Path"] = "/ws" }, ["Metadata"] = new JsonObject { ["Listeners"] = "WebSocket", ["Policies"] = "ws" } },
            },
            ["Clusters"] = new JsonObject
            {
                ["model-http"] = new JsonObject
                {
                    ["Destinations"] = new JsonObject { ["d"] = new JsonObject { ["Address"] = "http://127.0.0.1:9/" } },
                    ["HttpRequest"] = new JsonObject { ["ActivityTimeout"] = "00:00:30" },
                    ["HttpClient"] = new JsonObject { ["MaxConnectionsPerServer"] = 100 },
                    ["Metadata"] = new JsonObject { ["ConnectTimeout"] = "00:00:05", ["PooledConnectionLifetime"] = "00:05:00", ["PooledConnectionIdleTimeout"] = "00:01:00" },
                },
            },
        },
    }.ToJsonString();

    private static readonly Dictionary<string, string?> s_ports = new()
    {
        ["Gateway:Listeners:Http:Port"] = "0", ["Gateway:Listeners:Grpc:Port"] = "0", ["Gateway:Listeners:WebSocket:Port"] = "0",
        ["Gateway:Listeners:Https:Port"] = "0", ["Gateway:Listeners:Admin:Port"] = "0",
    };

    [Fact]
    public async Task Every_numeric_and_duration_key_at_start_up_is_refused_naming_the_key_or_served()
    {
        using var dir = new TempDirectory();
        var json = Config(dir.Path);
        var failures = new List<string>();
        foreach (var (key, value) in Cases())
        {
            var settings = new Dictionary<string, string?>(s_ports) { [key] = value };
            GatewayServer gateway;
            try
            {
                gateway = await GatewayServer.StartAsync(json, settings, CancellationToken.None);
            }
            catch (InvalidOperationException ex) when (ex.InnerException is GatewayApp.ConfigurationException)
            {
                if (!ex.Message.Contains(key, StringComparison.OrdinalIgnoreCase))
                {
                    failures.Add($"{key}={value}: refused without naming the key: {ex.Message}");
                }

                continue;
            }
            catch (Exception ex)
            {
                failures.Add($"{key}={value}: start-up threw {ex.GetType().Name}: {ex.Message}");
                continue;
            }

            await using (gateway)
            {
                if (await ServesAsync(gateway) is { } problem)
                {
                    failures.Add($"{key}={value}: accepted, then {problem}");
                }
            }
        }

        Assert.True(failures.Count == 0, string.Join(Environment.NewLine, failures));
    }

    [Fact]
    public async Task Every_numeric_and_duration_key_on_reload_is_refused_in_one_line_naming_the_key_or_applied()
    {
        using var dir = new TempDirectory();
        var logs = new CapturedLogs();
        var reloadable = new ReloadableSource();
        await using var gateway = await GatewayServer.StartAsync(Config(dir.Path), s_ports, CancellationToken.None,
            logging => logging.AddProvider(logs), configure: b => b.Add(reloadable));
        var gate = gateway.Services.GetRequiredService<ConfigurationGate>();
        var failures = new List<string>();
        foreach (var (key, value) in Cases())
        {
            var (applied, refused, lines) = (gate.Applied, gate.Refused, logs.Entries.Count);
            reloadable.Provider.Replace(new Dictionary<string, string?> { [key] = value });
            if (gate.Refused == refused + 1)
            {
                var refusals = logs.Entries.Skip(lines).Where(static e => e.Level == LogLevel.Error).ToList();
                if (refusals.Count != 1 || !refusals[0].Message.Contains(key, StringComparison.OrdinalIgnoreCase))
                {
                    failures.Add($"{key}={value}: refused with {refusals.Count} error lines, expected one naming the key: {string.Join(" | ", refusals.Select(static e => e.Message))}");
                }
            }
            else if (gate.Applied != applied + 1 && s_ports.GetValueOrDefault(key) != value) // (the same value is no change)
            {
                failures.Add($"{key}={value}: neither applied nor refused");
            }
            else if (await ServesAsync(gateway) is { } problem)
            {
                failures.Add($"{key}={value}: applied, then {problem}");
            }

            reloadable.Provider.Replace([]); // back to the good configuration
        }

        Assert.True(failures.Count == 0, string.Join(Environment.NewLine, failures));
        Assert.Null(await ServesAsync(gateway));
    }

    /// <summary>Null when a request through every policy is answered without a 500 (the backend is down: 502 or a refusal).</summary>
    private static async Task<string?> ServesAsync(GatewayServer gateway)
    {
        using var client = new HttpClient { BaseAddress = gateway.GetAddress("Http"), Timeout = TimeSpan.FromSeconds(20) };
        try
        {
            using var response = await client.PostAsync("/v1/chat/completions", new StringContent("""{"model":"m","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}""", System.Text.Encoding.UTF8, "application/json"));
            return response.StatusCode == HttpStatusCode.InternalServerError ? $"500: {await response.Content.ReadAsStringAsync()}" : null;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            return $"the request failed: {ex.Message}";
        }
    }

    /// <summary>An in-memory configuration source whose whole content a test replaces and reloads at once.</summary>
    private sealed class ReloadableSource : IConfigurationSource
    {
        public ReloadableProvider Provider { get; } = new();

        public IConfigurationProvider Build(IConfigurationBuilder builder) => Provider;
    }

    private sealed class ReloadableProvider : ConfigurationProvider
    {
        public void Replace(Dictionary<string, string?> data)
        {
            Data = new Dictionary<string, string?>(data, StringComparer.OrdinalIgnoreCase);
            OnReload();
        }
    }

    private sealed class TempDirectory : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("gw-extreme-").FullName;

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}

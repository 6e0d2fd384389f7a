using System.Text.Json.Nodes;
using Gateway.Hosting;
using ModelSim;
using Microsoft.Extensions.Logging;
using TestSupport;

namespace Gateway.Tests;

/// <summary>
/// A simulated model server and a gateway in front of it, both in-process on free loopback ports, with the
/// gateway's logs captured. The gateway's configuration is the repository's shape (routes per listener) pointed at
/// the simulator; a test adjusts it through <see cref="Options"/>.
/// </summary>
internal sealed class GatewayHarness : IAsyncDisposable
{
    private GatewayHarness(ModelSimServer sim, GatewayServer gateway, CapturedLogs logs)
    {
        Sim = sim;
        Gateway = gateway;
        Logs = logs;
    }

    public ModelSimServer Sim { get; }

    public GatewayServer Gateway { get; }

    public CapturedLogs Logs { get; }

    public Uri Http => Gateway.GetAddress("Http")!;

    public Uri Grpc => Gateway.GetAddress("Grpc")!;

    public Uri WebSocket => Gateway.GetAddress("WebSocket")!;

    public Uri Admin => Gateway.GetAddress("Admin")!;

    public Uri? Https => Gateway.GetAddress("Https");

    /// <summary>What a test can change in the gateway's configuration.</summary>
    public sealed class Options
    {
        // The tests' bodies name placeholder models ("sim", "m"); ModelSim answers another model than Sim:Model with
        // 404 model_not_found (as vLLM does) unless told to serve any name. Remove once the gateway routes by model.
        public Dictionary<string, string?> Sim { get; } = new() { ["Sim:PerTokenMs"] = "2", ["Sim:PrefillMs"] = "1", ["Sim:AcceptAnyModel"] = "true" };

        /// <summary>Route timeout of the OpenAI and gRPC routes (null: none).</summary>
        public TimeSpan? RouteTimeout { get; set; } = TimeSpan.FromMinutes(5);

        /// <summary>The clusters' activity (idle) timeout.</summary>
        public TimeSpan ActivityTimeout { get; set; } = TimeSpan.FromSeconds(100);

        /// <summary>Extra gateway settings (key-value), applied last.</summary>
        public Dictionary<string, string?> Gateway { get; } = [];

        /// <summary>Overrides the backend of the HTTP cluster (a test's own backend).</summary>
        public Uri? HttpBackend { get; set; }

        /// <summary>Overrides the backend of the gRPC cluster.</summary>
        public Uri? GrpcBackend { get; set; }

        /// <summary>Edits the JSON configuration before start.</summary>
        public Action<JsonObject>? Edit { get; set; }

        /// <summary>A watched JSON file layered over the configuration (edit it to reload).</summary>
        public string? ConfigFile { get; set; }

        /// <summary>Turns the gateway's tracing on and adds to it (an in-memory exporter).</summary>
        public Action<OpenTelemetry.Trace.TracerProviderBuilder>? Tracing { get; set; }
    }

    public static async Task<GatewayHarness> StartAsync(Options? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new Options();
        var sim = await ModelSimServer.StartAsync(options.Sim, cancellationToken);
        try
        {
            var json = BuildConfig(options, options.HttpBackend ?? sim.HttpAddress, options.GrpcBackend ?? sim.GrpcAddress);
            var settings = new Dictionary<string, string?>
            {
                ["Gateway:Listeners:Http:Port"] = "0",
                ["Gateway:Listeners:Grpc:Port"] = "0",
                ["Gateway:Listeners:WebSocket:Port"] = "0",
                ["Gateway:Listeners:Https:Port"] = "0",
                ["Gateway:Listeners:Admin:Port"] = "0",
            };
            foreach (var (k, v) in options.Gateway)
            {
                settings[k] = v;
            }

            var logs = new CapturedLogs();
            var gateway = await GatewayServer.StartAsync(json.ToJsonString(), settings, cancellationToken, logging =>
            {
                logging.AddProvider(logs);
                logging.SetMinimumLevel(LogLevel.Debug);
            }, options.ConfigFile, tracing: options.Tracing);
            return new GatewayHarness(sim, gateway, logs);
        }
        catch
        {
            await sim.DisposeAsync();
            throw;
        }
    }

    /// <summary>The gateway configuration used by the tests: the repository's routes, pointed at the given backends.</summary>
    public static JsonObject BuildConfig(Options options, Uri httpBackend, Uri grpcBackend)
    {
        var timeout = options.RouteTimeout is { } t ? JsonValue.Create(t.ToString("c")) : null;
        var config = new JsonObject
        {
            ["ReverseProxy"] = new JsonObject
            {
                ["Routes"] = new JsonObject
                {
                    ["openai"] = new JsonObject
                    {
                        ["ClusterId"] = "model-http",
                        ["Match"] = new JsonObject { ["Path"] = "/v1/{**rest}" },
                        ["Timeout"] = timeout?.DeepClone(),
                        ["Metadata"] = new JsonObject { ["Listeners"] = "Http,Https" },
                    },
                    ["grpc-generation"] = new JsonObject
                    {
                        ["ClusterId"] = "model-grpc",
                        ["Match"] = new JsonObject { ["Path"] = "/inference.v1.Generation/{method}" },
                        ["Timeout"] = timeout?.DeepClone(),
                        ["Metadata"] = new JsonObject { ["Listeners"] = "Grpc,Https" },
                    },
                    ["websocket-stream"] = new JsonObject
                    {
                        ["ClusterId"] = "model-http",
                        ["Match"] = new JsonObject { ["Path"] = "/v1/stream" },
                        ["Metadata"] = new JsonObject { ["Listeners"] = "WebSocket" },
                    },
                },
                ["Clusters"] = new JsonObject
                {
                    ["model-http"] = new JsonObject
                    {
                        ["Destinations"] = new JsonObject { ["sim"] = new JsonObject { ["Address"] = httpBackend.ToString() } },
                        ["HttpRequest"] = new JsonObject { ["ActivityTimeout"] = options.ActivityTimeout.ToString("c") },
                    },
                    ["model-grpc"] = new JsonObject
                    {
                        ["Destinations"] = new JsonObject { ["sim"] = new JsonObject { ["Address"] = grpcBackend.ToString() } },
                        ["HttpRequest"] = new JsonObject
                        {
                            ["Version"] = "2",
                            ["VersionPolicy"] = "RequestVersionExact",
                            ["ActivityTimeout"] = options.ActivityTimeout.ToString("c"),
                        },
                    },
                },
            },
        };
        if (timeout is null)
        {
            config["ReverseProxy"]!["Routes"]!["openai"]!.AsObject().Remove("Timeout");
            config["ReverseProxy"]!["Routes"]!["grpc-generation"]!.AsObject().Remove("Timeout");
        }

        options.Edit?.Invoke(config);
        return config;
    }

    public async ValueTask DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await Sim.DisposeAsync();
    }
}

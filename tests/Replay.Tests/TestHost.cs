using System.Text.Json;
using ModelSim;
using Replay.Cli;

namespace Replay.Tests;

/// <summary>Runs the replay tool in-process and starts simulators for it to load.</summary>
internal static class TestHost
{
    /// <summary>A simulator that keeps up with the tests' loads: many slots, a long queue, tiny per-token time, no batch slowdown.</summary>
    public static Task<ModelSimServer> StartSimAsync(double perTokenMs = 0.2, int slots = 1024, double prefillMs = 1)
    {
        return ModelSimServer.StartAsync(new Dictionary<string, string?>
        {
            ["Sim:Slots"] = slots.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Sim:Queue"] = "100000",
            ["Sim:PrefillMs"] = prefillMs.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Sim:PrefillPerTokenMs"] = "0",
            ["Sim:PerTokenMs"] = perTokenMs.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Sim:BatchSlowdown"] = "0",
        });
    }

    /// <summary>
    /// A real gateway with the repository's appsettings.json in front of <paramref name="sim"/>: every listener on a free
    /// port, logging at Warning, the HTTP cluster's active health check off; <paramref name="settings"/> are applied last,
    /// <paramref name="jsonFile"/> (a profile) is layered over appsettings.json as <c>--config FILE</c> does.
    /// </summary>
    public static Task<Gateway.Hosting.GatewayServer> StartGatewayAsync(ModelSimServer sim, IReadOnlyDictionary<string, string?>? settings = null, string? jsonFile = null)
    {
        var all = new Dictionary<string, string?>
        {
            ["Logging:LogLevel:Default"] = "Warning",
            ["Gateway:Listeners:Http:Port"] = "0",
            ["Gateway:Listeners:Grpc:Port"] = "0",
            ["Gateway:Listeners:WebSocket:Port"] = "0",
            ["Gateway:Listeners:Https:Port"] = "0",
            ["Gateway:Listeners:Admin:Port"] = "0",
            ["ReverseProxy:Clusters:model-http:Destinations:sim:Address"] = sim.HttpAddress.ToString(),
            ["ReverseProxy:Clusters:model-grpc:Destinations:sim:Address"] = sim.GrpcAddress.ToString(),
            ["ReverseProxy:Clusters:model-http:HealthCheck:Active:Enabled"] = "false",
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            all[key] = value;
        }

        return Gateway.Hosting.GatewayServer.StartAsync(File.ReadAllText(TestSupport.RepoPaths.Combine("appsettings.json")), all, CancellationToken.None, jsonFile: jsonFile);
    }

    /// <summary>The arguments that point the tool at <paramref name="sim"/> (HTTP, gRPC and WebSocket).</summary>
    public static string[] Targets(ModelSimServer sim) =>
        ["--target", sim.HttpAddress.ToString(), "--grpc-target", sim.GrpcAddress.ToString(), "--progress", "plain"];

    /// <summary>Runs <c>replay</c> with <paramref name="args"/> in-process.</summary>
    public static async Task<Result> RunAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var code = await ReplayApp.RunAsync(args, output, error, cts.Token);
        return new Result(code, output.ToString(), error.ToString());
    }

    /// <summary>A temporary directory, deleted on dispose.</summary>
    public static TempDirectory CreateTempDirectory() => new();

    /// <summary>An exit code and what was written.</summary>
    internal sealed record Result(int ExitCode, string Output, string Error)
    {
        public override string ToString() => $"exit {ExitCode}\n--- stdout ---\n{Output}\n--- stderr ---\n{Error}";
    }

    /// <summary>Reads report.json.</summary>
    public static JsonDocument ReadReport(string directory) => JsonDocument.Parse(File.ReadAllBytes(Path.Combine(directory, "report.json")));
}

/// <summary>A directory under the temp path, removed when disposed.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "replay-tests-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Combine(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>Tests that measure real time run one at a time, so they do not disturb each other's timing on 2 cores.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RealTimeGroup
{
    public const string Name = "real time";
}

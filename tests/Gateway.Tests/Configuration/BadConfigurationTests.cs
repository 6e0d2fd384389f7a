using System.Net;
using System.Net.Sockets;
using Gateway.Hosting;
using TestSupport;

namespace Gateway.Tests.Configuration;

/// <summary>
/// Bad configuration stops the real gateway process at start-up with a non-zero exit and one line naming the key.
/// </summary>
public sealed class BadConfigurationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("gw-config-").FullName;

    public static TheoryData<string, string, string> Cases() => new()
    {
        {
            "missing certificate",
            """{ "Gateway": { "Listeners": { "Https": { "Port": 0, "Certificate": { "Path": "/nonexistent/server.pfx" } } } } }""",
            "Gateway:Listeners:Https:Certificate:Path"
        },
        {
            "unreadable certificate",
            """{ "Gateway": { "Listeners": { "Https": { "Port": 0, "Certificate": { "Path": "GARBAGE" } } } } }""",
            "cannot be read"
        },
        {
            "route to an unknown cluster",
            """{ "ReverseProxy": { "Routes": { "r1": { "ClusterId": "nope", "Match": { "Path": "/x" } } }, "Clusters": { "c1": { "Destinations": { "d": { "Address": "http://127.0.0.1:9/" } } } } } }""",
            "ReverseProxy:Routes:r1:ClusterId"
        },
        {
            "bad number",
            """{ "Gateway": { "Listeners": { "Grpc": { "Port": "eighty" } } } }""",
            "Gateway:Listeners:Grpc:Port"
        },
        {
            "port out of range",
            """{ "Gateway": { "Listeners": { "Http": { "Port": 70000 } } } }""",
            "Gateway:Listeners:Http:Port must be between 0 and 65535 (was 70000)"
        },
        {
            "unknown listener on a route",
            """{ "ReverseProxy": { "Routes": { "r1": { "ClusterId": "c1", "Match": { "Path": "/x" }, "Metadata": { "Listeners": "Http,Telnet" } } }, "Clusters": { "c1": { "Destinations": { "d": { "Address": "http://127.0.0.1:9/" } } } } } }""",
            "ReverseProxy:Routes:r1:Metadata:Listeners"
        },
        {
            "unknown policy name on a route",
            """{ "ReverseProxy": { "Routes": { "r1": { "ClusterId": "c1", "Match": { "Path": "/x" }, "Metadata": { "Policies": "nope" } } }, "Clusters": { "c1": { "Destinations": { "d": { "Address": "http://127.0.0.1:9/" } } } } } }""",
            "ReverseProxy:Routes:r1:Metadata:Policies names policy 'nope'"
        },
        {
            "negative rate",
            """{ "Gateway": { "Shaping": { "Policies": { "p": { "Kind": "TokenBucket", "TokenLimit": 10, "TokensPerPeriod": -5 } } } } }""",
            "Gateway:Shaping:Policies:p:TokensPerPeriod must be > 0 (was -5)"
        },
        {
            "unknown partition key source",
            """{ "Gateway": { "Shaping": { "Policies": { "p": { "Kind": "FixedWindow", "PermitLimit": 10, "Partition": "ApiKey+Moon" } } } } }""",
            "Gateway:Shaping:Policies:p:Partition 'ApiKey+Moon' is invalid"
        },
        {
            "global policy without Redis",
            """{ "Gateway": { "Shaping": { "Policies": { "p": { "Kind": "FixedWindow", "PermitLimit": 10, "Scope": "Global" } } } } }""",
            "Gateway:Shaping:Policies:p:Scope is Global but Gateway:Shaping:Redis is not set"
        },
        {
            "admission on an unknown cluster",
            """{ "Gateway": { "Shaping": { "Admission": { "gpu": { "MaxInFlight": 4 } } } } }""",
            "Gateway:Shaping:Admission:gpu names cluster 'gpu'"
        },
        {
            "unknown policy kind",
            """{ "Gateway": { "Shaping": { "Policies": { "p": { "Kind": "Leaky" } } } } }""",
            "Gateway:Shaping:Policies:p:Kind"
        },
        {
            "misspelt listener",
            """{ "Gateway": { "Listeners": { "Htpp": { "Port": 0 } } } }""",
            "Gateway:Listeners:Htpp is not a known setting (did you mean Http?)"
        },
        {
            "misspelt admission key",
            """{ "Gateway": { "Shaping": { "Admission": { "model": { "MaxInFligth": 3 } } } } }""",
            "Gateway:Shaping:Admission:model:MaxInFligth is not a known setting (did you mean MaxInFlight?)"
        },
        {
            "duration without hh:mm:ss",
            """{ "Gateway": { "Shaping": { "Policies": { "p": { "Kind": "FixedWindow", "PermitLimit": 3, "Window": "1s" } } } } }""",
            "Gateway:Shaping:Policies:p:Window must be a duration"
        },
        {
            "numeric enum",
            """{ "Gateway": { "Shaping": { "Policies": { "p": { "Kind": 3, "PermitLimit": 3 } } } } }""",
            "Gateway:Shaping:Policies:p:Kind must be one of TokenBucket"
        },
        {
            "single value where a list belongs",
            """{ "Gateway": { "Recording": { "Redaction": { "Headers": "authorization" } } } }""",
            "Gateway:Recording:Redaction:Headers must be a list"
        },
        {
            "typo in the ReverseProxy section",
            """{ "ReverseProxy": { "Rutes": { "x": { "ClusterId": "model-http" } } } }""",
            "ReverseProxy:Rutes is not a known setting (did you mean Routes?)"
        },
        {
            "typo in a route",
            """{ "ReverseProxy": { "Routes": { "openai": { "Matsh": { "Path": "/v2/{**rest}" } } } } }""",
            "ReverseProxy:Routes:openai:Matsh is not a known setting (did you mean Match?)"
        },
        {
            "typo in a cluster's health check",
            """{ "ReverseProxy": { "Clusters": { "model-http": { "HealthCheck": { "Active": { "Intreval": "00:00:05" } } } } } }""",
            "ReverseProxy:Clusters:model-http:HealthCheck:Active:Intreval is not a known setting (did you mean Interval?)"
        },
        {
            "recording directory is a file",
            """{ "Gateway": { "Recording": { "Directory": "GARBAGE" } } }""",
            "is a file, not a directory"
        },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Bad_configuration_exits_non_zero_naming_the_key(string what, string json, string expected)
    {
        var garbage = Path.Combine(_dir, "garbage.pfx");
        await File.WriteAllTextAsync(garbage, "not a certificate");
        var config = Path.Combine(_dir, "bad.json");
        await File.WriteAllTextAsync(config, json.Replace("GARBAGE", garbage, StringComparison.Ordinal));

        var (exit, stderr) = await RunGatewayAsync("--config", config);

        Assert.True(exit != 0, $"{what}: the gateway started");
        Assert.Contains(expected, stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_range_Polly_enforces_is_checked_first_exit_2_with_one_line_naming_the_key()
    {
        // Polly's BreakDuration range is 0.5 s to 1 day: this ended in "Unhandled exception ... ValidationException", exit 134.
        var (exit, stderr) = await RunGatewayAsync(["--config", RepoPaths.Combine("config", "protect-sim.json"),
            "--Gateway:Shaping:Admission:model-http:CircuitBreaker:BreakDuration=2.00:00:00"], RepoPaths.Combine("."));

        Assert.Equal(2, exit);
        Assert.Equal(
            ["gateway: configuration error: Gateway:Shaping:Admission:model-http:CircuitBreaker:BreakDuration must be a duration from 00:00:00.500 to 1.00:00:00 (was 2.00:00:00)."],
            stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    [Fact]
    public async Task Port_in_use_exits_non_zero_naming_the_listener_key()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var config = Path.Combine(_dir, "busy.json");
        await File.WriteAllTextAsync(config, $$"""{ "Gateway": { "Listeners": { "WebSocket": { "Port": {{port}} } } } }""");

        var (exit, stderr) = await RunGatewayAsync("--config", config);

        Assert.Equal(2, exit);
        Assert.Contains($"Gateway:Listeners:WebSocket:Port: 127.0.0.1:{port} is already in use", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Port_in_use_prints_only_the_documented_line_and_exits_2()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;

        var dll = typeof(GatewayServer).Assembly.Location;
        await using var process = ChildProcess.Start("dotnet",
            [dll, "--config", RepoPaths.Combine("config", "protect-sim.json"), $"--Gateway:Listeners:Http:Port={port}", "--Gateway:Listeners:Grpc:Port=0",
                "--Gateway:Listeners:WebSocket:Port=0", "--Gateway:Listeners:Https:Port=0", "--Gateway:Listeners:Admin:Port=0"],
            workingDirectory: RepoPaths.Combine(".")); // appsettings.json there has the routes protect-sim.json shapes
        var exit = await process.WaitForExitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(2, exit);
        var lines = (process.StandardOutput + process.StandardError).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal([$"gateway: configuration error: Gateway:Listeners:Http:Port: 127.0.0.1:{port} is already in use by another process."], lines);
    }

    [Fact]
    public async Task Listener_address_the_machine_does_not_own_exits_2_naming_the_key()
    {
        // 192.0.2.1 is TEST-NET-1 (RFC 5737): reserved for documentation, never an address of this machine.
        var (exit, stderr) = await RunGatewayAsync("--Gateway:Listeners:Http:Address=192.0.2.1");

        Assert.Equal(2, exit);
        Assert.Contains("gateway: configuration error: Gateway:Listeners:Http:Address: 192.0.2.1 is not an address of this machine", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Missing_config_file_exits_non_zero()
    {
        var (exit, stderr) = await RunGatewayAsync("--config", Path.Combine(_dir, "absent.json"));

        Assert.Equal(2, exit);
        Assert.Contains("absent.json' does not exist", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Malformed_json_exits_2_naming_the_file()
    {
        var config = Path.Combine(_dir, "broken.json");
        await File.WriteAllTextAsync(config, """{ "Gateway": """);

        var (exit, stderr) = await RunGatewayAsync("--config", config);

        Assert.Equal(2, exit);
        Assert.Contains("broken.json", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unknown_command_line_setting_exits_2()
    {
        var (exit, stderr) = await RunGatewayAsync("--frobnicate", "1");

        Assert.Equal(2, exit);
        Assert.Contains("'--frobnicate' is not a setting the gateway reads", stderr, StringComparison.Ordinal);
    }

    /// <summary>Runs the gateway's own executable in a directory without appsettings.json, other listeners on free ports.</summary>
    private Task<(int Exit, string Stderr)> RunGatewayAsync(params string[] args) => RunGatewayAsync(args, _dir);

    private static async Task<(int Exit, string Stderr)> RunGatewayAsync(string[] args, string workingDirectory)
    {
        var dll = typeof(GatewayServer).Assembly.Location;
        string[] ports =
        [
            "--Gateway:Listeners:Http:Port=0", "--Gateway:Listeners:Grpc:Port=0", "--Gateway:Listeners:WebSocket:Port=0",
            "--Gateway:Listeners:Https:Port=0", "--Gateway:Listeners:Admin:Port=0",
        ];

        // Command-line keys win over --config, so only pass the ports the case does not set itself.
        var configText = args.Length > 1 && File.Exists(args[1]) ? await File.ReadAllTextAsync(args[1]) : string.Empty;
        var effective = ports.Where(p => !configText.Contains($"\"{p.Split(':')[2]}\": {{ \"Port\"", StringComparison.Ordinal)).ToArray();

        await using var process = ChildProcess.Start("dotnet", [dll, .. args, .. effective], workingDirectory: workingDirectory);
        var exit = await process.WaitForExitAsync(TimeSpan.FromSeconds(60));
        return (exit, process.StandardError);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

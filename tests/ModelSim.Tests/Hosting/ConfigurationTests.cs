using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;
using ModelSim.Tests.Support;

namespace ModelSim.Tests.Hosting;

/// <summary>Configuration: every key overridable, bad values fail start-up with the key named; the real process exits non-zero.</summary>
public sealed partial class ConfigurationTests
{
    [Fact]
    public async Task InvalidSettingFailsStartNamingTheKey()
    {
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => Sims.StartAsync(("Slots", -1)));
        Assert.Contains("Sim:Slots must be > 0 (was -1).", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EveryInvalidSettingIsReportedAtOnce()
    {
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => Sims.StartAsync(("Slots", 0), ("PerTokenMs", -2), ("Grpc:Port", 70000)));
        Assert.Contains("Sim:Slots must be > 0 (was 0).", error.Failures);
        Assert.Contains("Sim:PerTokenMs must be a finite number >= 0 (was -2).", error.Failures);
        Assert.Contains("Sim:Grpc:Port must be between 0 and 65535 (was 70000).", error.Failures);
    }

    [Fact]
    public async Task UnconvertibleValueAndUnknownKeyFailNamingTheKey()
    {
        var notANumber = await Assert.ThrowsAsync<OptionsValidationException>(() => Sims.StartAsync(("Slots", "lots")));
        Assert.Contains("Sim:Slots", notANumber.Message, StringComparison.Ordinal);
        var typo = await Assert.ThrowsAsync<OptionsValidationException>(() => Sims.StartAsync(("Slotz", 4), ("Http:Prot", 1)));
        Assert.Contains("Sim:Slotz is not a known setting (docs/modelsim.md lists them).", typo.Failures);
        Assert.Contains("Sim:Http:Prot is not a known setting (docs/modelsim.md lists them).", typo.Failures);
    }

    [Fact]
    public async Task PrefixCacheSettingsAreValidatedNamingTheKey()
    {
        var bad = await Assert.ThrowsAsync<OptionsValidationException>(() => Sims.StartAsync(("PrefixCache:BlockTokens", 0), ("PrefixCache:Blocks", -5)));
        Assert.Contains("Sim:PrefixCache:BlockTokens must be > 0 (was 0).", bad.Failures);
        Assert.Contains("Sim:PrefixCache:Blocks must be > 0 (was -5).", bad.Failures);
        var tooLarge = await Assert.ThrowsAsync<OptionsValidationException>(() => Sims.StartAsync(("PrefixCache:BlockTokens", 4096)));
        Assert.Contains("Sim:PrefixCache:BlockTokens must be <= 1024 (was 4096).", tooLarge.Failures);
        var typo = await Assert.ThrowsAsync<OptionsValidationException>(() => Sims.StartAsync(("PrefixCache:Enable", false)));
        Assert.Contains("Sim:PrefixCache:Enable is not a known setting (docs/modelsim.md lists them).", typo.Failures);
        var notABool = await Assert.ThrowsAsync<OptionsValidationException>(() => Sims.StartAsync(("PrefixCache:Enabled", "maybe")));
        Assert.Contains("Sim:PrefixCache:Enabled", notABool.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BindsFreePortsAndReadsThemBack()
    {
        await using var a = await Sims.StartAsync();
        await using var b = await Sims.StartAsync(("Http:Address", "localhost"));
        Assert.Equal("127.0.0.1", a.HttpAddress.Host);
        Assert.NotEqual(0, a.HttpAddress.Port);
        Assert.NotEqual(a.HttpAddress.Port, a.GrpcAddress.Port);
        Assert.NotEqual(a.HttpAddress.Port, b.HttpAddress.Port);
        Assert.Equal("ws", a.WebSocketAddress.Scheme);
        Assert.Equal("/v1/stream", a.WebSocketAddress.AbsolutePath);
        using var client = Sims.Client(b);
        Assert.Equal(200, (int)(await client.GetAsync("/health")).StatusCode);
    }

    [Fact]
    public async Task CapacityAndLatencyHelpersUseTheInstanceSettings()
    {
        await using var sim = await Sims.StartAsync(("Slots", 8), ("PrefillMs", 10), ("PrefillPerTokenMs", 0.1), ("PerTokenMs", 5), ("BatchSlowdown", 1));
        // 1000 × 8 / (10 + 100 × 0.1 + 20 × 5 × 2) = 8000 / 220
        Assert.Equal(8000.0 / 220, sim.CapacityPerSecond(100, 20), 9);
        Assert.Equal(TimeSpan.FromMilliseconds(120), sim.UnloadedLatency(100, 20));
    }

    [Fact]
    public async Task ProcessExitsNonZeroWithTheKeyOnStderr()
    {
        var (exitCode, _, stderr) = await RunProcessAsync(["--Sim:Slots=-1", "--Sim:Http:Port=0", "--Sim:Grpc:Port=0"]);
        Assert.Equal(2, exitCode);
        Assert.Contains("Sim:Slots must be > 0 (was -1).", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ProcessTakesSettingsFromTheCommandLine()
    {
        using var stop = new CancellationTokenSource(Sims.Timeout);
        var psi = StartInfo(["--Sim:Http:Port=0", "--Sim:Grpc:Port=0", "--Sim:Model=cli-model"]);
        using var process = Process.Start(psi)!;
        try
        {
            string? http = null;
            while (http is null && await process.StandardOutput.ReadLineAsync(stop.Token) is { } line)
            {
                if (ListeningLine().Match(line) is { Success: true } match)
                {
                    http = match.Groups["http"].Value;
                }
            }

            Assert.NotNull(http);
            using var client = new HttpClient { BaseAddress = new Uri(http), Timeout = Sims.Timeout };
            var models = JsonNode.Parse(await client.GetStringAsync("/v1/models", stop.Token))!;
            Assert.Equal("cli-model", (string)models["data"]![0]!["id"]!);
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync(CancellationToken.None);
        }
    }

    [GeneratedRegex(@"ModelSim listening: HTTP (?<http>http://[^ ]+) ")]
    private static partial Regex ListeningLine();

    /// <summary>Runs the simulator's own executable (the ModelSim.dll next to the tests) with <paramref name="args"/>.</summary>
    private static ProcessStartInfo StartInfo(string[] args)
    {
        var dll = typeof(ModelSimServer).Assembly.Location;
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(dll)!,
        };
        psi.ArgumentList.Add(dll);
        foreach (var arg in args)
        {
            psi.ArgumentList.Add(arg);
        }

        psi.Environment["Logging__Console__FormatterName"] = "simple";
        return psi;
    }

    private static async Task<(int ExitCode, string Stdout, string Stderr)> RunProcessAsync(string[] args)
    {
        using var process = Process.Start(StartInfo(args))!;
        using var timeout = new CancellationTokenSource(Sims.Timeout);
        try
        {
            var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
            var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
            await process.WaitForExitAsync(timeout.Token);
            return (process.ExitCode, await stdout, await stderr);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }
}

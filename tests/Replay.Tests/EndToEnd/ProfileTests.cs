using System.Text.Json;

namespace Replay.Tests.EndToEnd;

/// <summary>Each open-model profile's achieved rate, second by second, follows its shape.</summary>
[Collection(RealTimeGroup.Name)]
public sealed class ProfileTests
{
    public static TheoryData<string, string[], double[]> Shapes => new()
    {
        { "constant", ["--rate", "100", "--duration", "2s"], [100, 100] },
        { "ramp", ["--profile", "ramp", "--rate", "50", "--to", "250", "--duration", "3s"], [83.3, 150, 216.7] },
        { "steps", ["--profile", "steps", "--rate", "50", "--to", "200", "--step-every", "1s", "--step-factor", "2", "--duration", "3s"], [50, 100, 200] },
        { "spike", ["--profile", "spike", "--rate", "50", "--spike-rate", "300", "--spike-at", "1s", "--spike-for", "1s", "--duration", "3s"], [50, 300, 50] },
    };

    [Theory(Timeout = 60_000)]
    [MemberData(nameof(Shapes))]
    public async Task The_achieved_rate_per_second_matches_the_profile(string name, string[] profile, double[] expected)
    {
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();

        var result = await TestHost.RunAsync(["load", "--max-tokens", "2", "--report", dir.Path, .. profile, .. TestHost.Targets(sim)]);

        Assert.True(result.ExitCode == 0, result.ToString());
        using var report = TestHost.ReadReport(dir.Path);
        var series = report.RootElement.GetProperty("series").EnumerateArray().ToList();
        Assert.True(series.Count >= expected.Length, $"{name}: only {series.Count} seconds in the series");
        for (var s = 0; s < expected.Length; s++)
        {
            var intended = series[s].GetProperty("intended").GetInt64();
            var sent = series[s].GetProperty("sent").GetInt64();
            Assert.InRange(intended, expected[s] * 0.97 - 1, expected[s] * 1.03 + 1);
            Assert.InRange(sent, expected[s] * 0.9 - 2, expected[s] * 1.1 + 2);
        }

        var total = expected.Sum();
        Assert.InRange(report.RootElement.GetProperty("requests").GetInt64(), total * 0.98 - 1, total * 1.02 + 1);
        Assert.Equal(0, report.RootElement.GetProperty("failures").GetInt64());
        Assert.Equal(sim.Stats.Completed, report.RootElement.GetProperty("requests").GetInt64());
    }

    [Theory(Timeout = 60_000)]
    [InlineData("poisson", new string[0])]
    [InlineData("gamma", new[] { "--burstiness", "0.25" })]
    public async Task Random_arrivals_keep_the_mean_rate(string profile, string[] extra)
    {
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();

        var result = await TestHost.RunAsync(["load", "--profile", profile, "--rate", "200", "--duration", "2s", "--max-tokens", "2", "--report", dir.Path, .. extra, .. TestHost.Targets(sim)]);

        Assert.True(result.ExitCode == 0, result.ToString());
        using var report = TestHost.ReadReport(dir.Path);
        Assert.InRange(report.RootElement.GetProperty("requests").GetInt64(), 400 * 0.8, 400 * 1.2);
        Assert.Contains(profile, report.RootElement.GetProperty("profile").GetString(), StringComparison.Ordinal);
    }
}

using System.Globalization;
using ModelSim;

namespace Replay.Tests.Capacity;

/// <summary>
/// replay sweep against a simulator whose capacity is known from its settings, and the shaping profile it writes,
/// loaded by a real gateway in front of the same simulator.
/// </summary>
[Collection(RealTimeGroup.Name)]
public sealed class SweepTests
{
    [Fact(Timeout = 120_000)]
    public async Task The_sweep_finds_the_knee_near_the_capacity_and_its_profile_keeps_admitted_p95_within_the_slo_at_3x()
    {
        // 8 slots, 16 output tokens: T_sat = 5 + 16 × 5 × 1.5 = 125 ms, so 8000 / 125 = 64 requests/s (docs/modelsim.md).
        await using var sim = await ModelSimServer.StartAsync(new Dictionary<string, string?>
        {
            ["Sim:Slots"] = "8",
            ["Sim:Queue"] = "100000",
            ["Sim:PrefillMs"] = "5",
            ["Sim:PrefillPerTokenMs"] = "0",
            ["Sim:PerTokenMs"] = "5",
            ["Sim:BatchSlowdown"] = "0.5",
        });
        var capacity = sim.CapacityPerSecond(16, 16);
        Assert.Equal(64, capacity, 3);
        using var dir = TestHost.CreateTempDirectory();

        var sweep = await TestHost.RunAsync(["sweep", "--target", sim.HttpAddress.ToString(), "--rate", "32", "--step-factor", "1.25", "--step-every", "3s",
            "--slo", "e2e_p95<1s", "--max-tokens", "16", "--prompt-tokens", "16", "--report", dir.Path, "--progress", "none"]);

        Assert.True(sweep.ExitCode == 0, sweep.ToString());
        using var report = JsonDocumentFrom(dir.Combine("sweep.json"));
        var root = report.RootElement;
        Assert.True(root.GetProperty("past_knee").GetBoolean(), sweep.ToString());
        var maxGoodput = root.GetProperty("max_goodput_rps").GetDouble();
        var knee = root.GetProperty("knee_rate").GetDouble();
        Assert.True(Math.Abs(maxGoodput - capacity) <= 0.15 * capacity, $"most goodput {maxGoodput}/s, capacity {capacity}/s\n{sweep}");
        Assert.True(Math.Abs(knee - capacity) <= 0.15 * capacity, $"knee at {knee}/s, capacity {capacity}/s\n{sweep}");
        Assert.Contains("most goodput", sweep.Output, StringComparison.Ordinal);
        var profile = dir.Combine("shaping-profile.json");
        Assert.True(File.Exists(profile), sweep.ToString());

        // The profile, layered over the repository's appsettings.json as `gateway --config FILE` does, must pass the
        // gateway's start-up validation and, under 3x the capacity, keep the admitted requests within the SLO.
        await using var gateway = await TestHost.StartGatewayAsync(sim, jsonFile: profile);
        using var protectedDir = TestHost.CreateTempDirectory();
        var rate = (3 * capacity).ToString("0", CultureInfo.InvariantCulture);
        var load = await TestHost.RunAsync(["load", "--target", gateway.GetAddress("Http")!.ToString(), "--rate", rate, "--duration", "4s", "--warmup", "1s",
            "--max-tokens", "16", "--prompt-tokens", "16", "--slo", "e2e_p95<1s", "--report", protectedDir.Path, "--progress", "none"]);

        Assert.True(load.ExitCode == 0, load.ToString());
        using var loaded = TestHost.ReadReport(protectedDir.Path);
        var r = loaded.RootElement;
        var admittedP95 = r.GetProperty("success_latency_ms").GetProperty("p95").GetDouble();
        Assert.True(admittedP95 < 1000, $"admitted p95 {admittedP95} ms\n{load}");
        Assert.True(r.GetProperty("failures_by_kind").GetProperty("refused").GetInt64() > 0, load.ToString());
        var succeeded = r.GetProperty("succeeded").GetInt64();
        Assert.True(succeeded >= 0.6 * capacity * 4, $"{succeeded} admitted in 4 s: the profile should keep the target busy\n{load}");
    }

    [Fact(Timeout = 60_000)]
    public async Task A_sweep_that_ends_before_the_knee_says_so_and_marks_its_profile_provisional()
    {
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();

        var sweep = await TestHost.RunAsync(["sweep", "--target", sim.HttpAddress.ToString(), "--rate", "10", "--to", "20", "--step-factor", "2",
            "--step-every", "1s", "--max-tokens", "4", "--slo", "e2e_p95<2s", "--report", dir.Path, "--progress", "none"]);

        Assert.True(sweep.ExitCode == 0, sweep.ToString());
        Assert.Contains("raise --to", sweep.Output, StringComparison.Ordinal);
        Assert.Contains("shaping profile (provisional: no knee below --to)", sweep.Output, StringComparison.Ordinal);
        Assert.Contains("PROVISIONAL", await File.ReadAllTextAsync(dir.Combine("shaping-profile.json")), StringComparison.Ordinal);
    }

    /// <summary>
    /// Each step of a sweep reports the model server's prefix cache hit rate from its vLLM counters read before and
    /// after the step, as <c>replay load</c> does for a run: 2 prefixes of 200 tokens, warmed up, so every request of
    /// every step finds its prefix's 12 full blocks cached (192 of its 216 prompt tokens).
    /// </summary>
    [Fact(Timeout = 60_000)]
    public async Task Each_step_reports_the_prefix_cache_hit_rate_of_the_model_server()
    {
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();

        var sweep = await TestHost.RunAsync(["sweep", "--target", sim.HttpAddress.ToString(), "--rate", "10", "--to", "20", "--step-factor", "2",
            "--step-every", "1s", "--max-tokens", "4", "--warmup", "300ms", "--prefix-groups", "2", "--prefix-tokens", "200", "--prompt-tokens", "16",
            "--report", dir.Path, "--progress", "none"]);

        Assert.True(sweep.ExitCode == 0, sweep.ToString());
        Assert.Contains("cache hit", sweep.Output, StringComparison.Ordinal);
        Assert.Contains("88.9%", sweep.Output, StringComparison.Ordinal);
        using var json = JsonDocumentFrom(dir.Combine("sweep.json"));
        var steps = json.RootElement.GetProperty("steps").EnumerateArray().ToList();
        Assert.Equal(2, steps.Count);
        foreach (var step in steps)
        {
            var sent = step.GetProperty("sent").GetInt64();
            var cache = step.GetProperty("prefix_cache");
            Assert.Equal(sent * 216, cache.GetProperty("queries").GetDouble());
            Assert.Equal(sent * 192, cache.GetProperty("hits").GetDouble());
            Assert.Equal(192.0 / 216, step.GetProperty("prefix_cache_hit_rate").GetDouble(), 3);
        }
    }

    private static System.Text.Json.JsonDocument JsonDocumentFrom(string path) => System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(path));
}

namespace Replay.Tests.Cli;

/// <summary>replay run --scenario FILE: a workload written once in YAML or JSON, checked with errors that name the line.</summary>
public sealed class ScenarioTests
{
    [Fact(Timeout = 30_000)]
    public async Task A_yaml_scenario_with_errors_is_refused_and_each_error_names_its_line()
    {
        using var dir = TestHost.CreateTempDirectory();
        var file = dir.Combine("load.yaml");
        await File.WriteAllTextAsync(file, """
            # nightly capacity check
            target: http://127.0.0.1:9
            rat: 100
            duration: soon
            max_tokens: many
            stream: yes please
            slo: {ttft: 1}
            profile: wobbly
            """);

        var result = await TestHost.RunAsync("run", "--scenario", file);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("load.yaml:3: unknown key 'rat' (did you mean 'rate'?)", result.Error, StringComparison.Ordinal);
        Assert.Contains("load.yaml:4: duration: 'soon' is not a duration (e.g. 500ms, 10s, 2m, 1h, 00:01:30).", result.Error, StringComparison.Ordinal);
        Assert.Contains("load.yaml:5: max-tokens must be a whole number (was 'many')", result.Error, StringComparison.Ordinal);
        Assert.Contains("load.yaml:6: stream must be true or false", result.Error, StringComparison.Ordinal);
        Assert.Contains("load.yaml:7: slo must be a list", result.Error, StringComparison.Ordinal);
        Assert.Contains("load.yaml:8: profile must be one of constant, ramp", result.Error, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task Json_errors_name_the_line_too_from_broken_syntax_to_a_value_the_run_refuses()
    {
        using var dir = TestHost.CreateTempDirectory();
        var broken = dir.Combine("broken.json");
        await File.WriteAllTextAsync(broken, "{\n  \"target\": \"http://127.0.0.1:9\",\n  \"rate\": 10\n  \"duration\": \"1s\"\n}\n");
        var refused = dir.Combine("refused.json");
        await File.WriteAllTextAsync(refused, "{\n  // comments and trailing commas are fine\n  \"target\": \"http://127.0.0.1:9\",\n  \"rate\": -5,\n  \"duration\": \"2s\",\n}\n");
        var unclosed = dir.Combine("unclosed.yaml");
        await File.WriteAllTextAsync(unclosed, "target: http://127.0.0.1:9\nslo: [\"ttft_p95<1s\"\nrate: 1\n");

        var a = await TestHost.RunAsync("run", "--scenario", broken);
        var b = await TestHost.RunAsync("run", "--scenario", refused);
        var c = await TestHost.RunAsync("load", "--scenario", unclosed);

        Assert.True(a.ExitCode == 2 && a.Error.Contains("broken.json:4: not valid JSON", StringComparison.Ordinal), a.ToString());
        Assert.True(b.ExitCode == 2 && b.Error.Contains("refused.json:4: --rate must be > 0", StringComparison.Ordinal), b.ToString());
        Assert.True(c.ExitCode == 2 && c.Error.Contains("unclosed.yaml:", StringComparison.Ordinal) && c.Error.Contains("not valid YAML", StringComparison.Ordinal), c.ToString());
    }

    [Fact(Timeout = 60_000)]
    public async Task A_scenario_runs_like_its_flags_with_paths_relative_to_it_and_the_command_line_winning()
    {
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();
        var file = dir.Combine("smoke.yaml");
        await File.WriteAllTextAsync(file, $"""
            command: load
            target: {sim.HttpAddress}
            rate: 100
            duration: 1s
            max_tokens: 2
            stream: true
            slos: ["ttft_p95<2s"]
            asserts:
              - error_rate<1%
              - requests>=40
            headers:
              x-team: capacity
            report: out
            progress: none
            """);

        var result = await TestHost.RunAsync("run", "--scenario", file, "--rate", "40");

        Assert.True(result.ExitCode == 0, result.ToString());
        using var report = TestHost.ReadReport(dir.Combine("out"));
        Assert.Equal(40, report.RootElement.GetProperty("requests").GetInt64()); // --rate 40 on the command line won
        Assert.Equal(40, report.RootElement.GetProperty("ttft_ms").GetProperty("count").GetInt64()); // stream: true
        Assert.Equal(2, report.RootElement.GetProperty("assertions").GetArrayLength());
        Assert.Single(report.RootElement.GetProperty("goodput").GetProperty("slos").EnumerateArray());
    }

    [Fact(Timeout = 60_000)]
    public async Task A_scenarios_durations_take_every_form_of_the_flags_and_are_checked_like_them()
    {
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();
        var good = dir.Combine("timed.yaml");
        await File.WriteAllTextAsync(good, $"""
            command: load
            target: {sim.HttpAddress}
            rate: 20
            duration: 00:00:01
            warmup: 250ms
            timeout: 0.5m
            think: 0
            max_tokens: 2
            report: out
            progress: none
            """);
        var bad = dir.Combine("bad.yaml");
        await File.WriteAllTextAsync(bad, """
            target: http://127.0.0.1:9
            rate: 20
            duration: 1s
            timeout: 10x
            turn_think: 1:30
            """);
        var zero = dir.Combine("zero.yaml");
        await File.WriteAllTextAsync(zero, """
            target: http://127.0.0.1:9
            rate: 20
            duration: 1s
            timeout: 00:00:00
            """);

        var ran = await TestHost.RunAsync("run", "--scenario", good);
        var refused = await TestHost.RunAsync("load", "--scenario", bad);
        var outOfRange = await TestHost.RunAsync("load", "--scenario", zero);

        Assert.True(ran.ExitCode == 0, ran.ToString());
        using (var report = TestHost.ReadReport(dir.Combine("out")))
        {
            Assert.Equal(20, report.RootElement.GetProperty("requests").GetInt64()); // 1 s at 20/s, the warm-up unmeasured
        }

        Assert.True(refused.ExitCode == 2, refused.ToString());
        Assert.Contains("bad.yaml:4: timeout: '10x' is not a duration (e.g. 500ms, 10s, 2m, 1h, 00:01:30).", refused.Error, StringComparison.Ordinal);
        Assert.Contains("bad.yaml:5: turn-think: '1:30' is not a duration", refused.Error, StringComparison.Ordinal);
        Assert.True(outOfRange.ExitCode == 2, outOfRange.ToString());
        Assert.Contains("zero.yaml:4: --timeout must be > 0 (was 0s).", outOfRange.Error, StringComparison.Ordinal);
    }
}

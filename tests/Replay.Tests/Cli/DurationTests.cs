using Replay.Cli;
using Replay.Workers;

namespace Replay.Tests.Cli;

/// <summary>
/// Durations are typed options with one parser (<see cref="ValueParsers.TryParseDuration"/>, through
/// <see cref="DurationOption"/>): every flag, scenario files and the worker spec accept the same forms, and a bad
/// value is refused at parse time, exit 2, naming the flag and the accepted forms.
/// </summary>
public sealed class DurationTests
{
    private const string Target = "http://127.0.0.1:9";
    private const string Forms = "(e.g. 500ms, 10s, 2m, 1h, 00:01:30)";

    [Theory]
    [InlineData("250us", 0.25)]
    [InlineData("250µs", 0.25)]
    [InlineData("500ms", 500)]
    [InlineData("500MS", 500)]
    [InlineData("10s", 10_000)]
    [InlineData("10 s", 10_000)]
    [InlineData(" 10s ", 10_000)]
    [InlineData("1.5s", 1500)]
    [InlineData("1.5", 1500)] // a plain number is seconds
    [InlineData("0", 0)]
    [InlineData("0s", 0)]
    [InlineData("2m", 120_000)]
    [InlineData("1h", 3_600_000)]
    [InlineData("00:00:10", 10_000)]
    [InlineData("00:01:30", 90_000)]
    [InlineData("1:30:00", 5_400_000)]
    [InlineData("36:00:00", 129_600_000)]
    [InlineData("00:00:00.25", 250)]
    public void Every_accepted_form_parses(string text, double ms)
    {
        Assert.True(ValueParsers.TryParseDuration(text, out var value), text);
        Assert.Equal(ms, value.TotalMilliseconds, 6);
    }

    [Theory]
    [InlineData("10x")]
    [InlineData("soon")]
    [InlineData("")]
    [InlineData("s")]
    [InlineData("-1s")]
    [InlineData("1e3s")]
    [InlineData("10s5")]
    [InlineData("1m30s")]
    [InlineData("1:30")] // minutes:seconds or hours:minutes? neither: the clock form is HH:MM:SS
    [InlineData("00:60:00")]
    [InlineData("-00:00:10")]
    [InlineData("99999999999h")]
    public void Anything_else_is_not_a_duration(string text) =>
        Assert.False(ValueParsers.TryParseDuration(text, out _), text);

    [Theory]
    [InlineData(0L, "0s")]
    [InlineData(7_200_000L, "2h")]
    [InlineData(90_000L, "90s")]
    [InlineData(120_000L, "2m")]
    [InlineData(1500L, "1500ms")]
    public void A_duration_is_written_in_the_form_it_is_read(long ms, string text)
    {
        Assert.Equal(text, ValueParsers.FormatDuration(TimeSpan.FromMilliseconds(ms)));
    }

    [Theory]
    [InlineData(1L)] // one tick: the clock form with seven decimals
    [InlineData(2_500L)] // 250 µs
    [InlineData(123_456_789L)]
    [InlineData(36_000_000_001L)]
    public void Writing_and_reading_back_is_exact(long ticks)
    {
        var value = TimeSpan.FromTicks(ticks);
        Assert.True(ValueParsers.TryParseDuration(ValueParsers.FormatDuration(value), out var back), ValueParsers.FormatDuration(value));
        Assert.Equal(value, back);
    }

    /// <summary>Every duration flag of every command, with arguments that are otherwise valid.</summary>
    public static TheoryData<string, string> DurationFlags()
    {
        var data = new TheoryData<string, string>();
        foreach (var command in new[] { "run", "load", "sweep" })
        {
            foreach (var flag in new[] { "--duration", "--step-every", "--spike-at", "--spike-for", "--warmup", "--think", "--timeout", "--turn-think" })
            {
                data.Add(command, flag);
            }
        }

        data.Add("run", "--max-gap");
        data.Add("run", "--spread");
        data.Add("probe", "--timeout");
        return data;
    }

    [Theory(Timeout = 30_000)]
    [MemberData(nameof(DurationFlags))]
    public async Task A_bad_value_of_any_duration_flag_is_refused_naming_the_flag_and_the_forms(string command, string flag)
    {
        string[] args = command switch
        {
            "run" => ["run", "--source", "azure-llm:x.csv", "--target", Target, flag, "10x"],
            "probe" => ["probe", "--http", Target, flag, "10x"],
            _ => [command, "--target", Target, "--rate", "10", flag, "10x"],
        };

        var result = await TestHost.RunAsync(args);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains($"replay: {flag}: '10x' is not a duration {Forms}.", result.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Error, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_short_alias_is_named_by_its_flag_and_every_bad_duration_is_listed()
    {
        var result = await TestHost.RunAsync("load", "--target", Target, "--rate", "10", "-d", "soon", "--warmup", "1m30s", "--timeout", "-5s");

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains($"--duration: 'soon' is not a duration {Forms}", result.Error, StringComparison.Ordinal);
        Assert.Contains($"--warmup: '1m30s' is not a duration {Forms}", result.Error, StringComparison.Ordinal);
        Assert.Contains($"--timeout: '-5s' is not a duration {Forms}", result.Error, StringComparison.Ordinal);
    }

    public static TheoryData<string[], string> ZeroRefused => new()
    {
        { ["load", "--target", Target, "--rate", "10", "--duration", "0"], "--duration must be > 0 (was 0s)." },
        { ["load", "--target", Target, "--rate", "10", "--duration", "1s", "--timeout", "00:00:00"], "--timeout must be > 0 (was 0s)." },
        { ["load", "--target", Target, "--profile", "steps", "--rate", "10", "--to", "20", "--step-factor", "2", "--step-every", "0ms"], "--step-every must be > 0 (was 0s)." },
        { ["load", "--target", Target, "--profile", "spike", "--rate", "10", "--duration", "2s", "--spike-rate", "20", "--spike-at", "0s", "--spike-for", "0us"], "--spike-for must be > 0 (was 0s)." },
        { ["run", "--source", "azure-llm:x.csv", "--target", Target, "--max-gap", "0s"], "--max-gap must be > 0 (was 0s)." },
        { ["sweep", "--target", Target, "--rate", "10", "--step-every", "00:00:00.5"], "--step-every must be a duration of at least 1s (was 500ms)." },
        { ["probe", "--http", Target, "--timeout", "0"], "--timeout must be > 0 (was 0s)." },
    };

    [Theory(Timeout = 30_000)]
    [MemberData(nameof(ZeroRefused))]
    public async Task A_duration_out_of_range_is_refused_naming_the_flag(string[] args, string expected)
    {
        var result = await TestHost.RunAsync(args);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains(expected, result.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("is not a duration", result.Error, StringComparison.Ordinal);
    }

    [Theory(Timeout = 30_000)]
    [InlineData("250us")]
    [InlineData("500ms")]
    [InlineData("1.5")]
    [InlineData("2m")]
    [InlineData("1h")]
    [InlineData("00:01:30")]
    public async Task Every_form_is_accepted_by_every_duration_flag(string form)
    {
        // Valid up to --workers without --redis: the only problem reported, so every duration was taken.
        var result = await TestHost.RunAsync("load", "--target", Target, "--rate", "10", "--duration", form, "--warmup", form, "--think", form,
            "--timeout", form, "--turn-think", form, "--workers", "2");

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("--workers needs --redis", result.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("duration", result.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("must be > 0", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void The_worker_spec_carries_durations_as_typed_and_reads_them_with_the_same_parser()
    {
        var settings = new ReplaySettings
        {
            Command = "load",
            Duration = TimeSpan.FromSeconds(90),
            StepEvery = TimeSpan.FromMilliseconds(1500),
            SpikeAt = TimeSpan.Zero,
            Think = TimeSpan.FromTicks(2_500),
            Timeout = TimeSpan.FromSeconds(30),
            MaxGap = TimeSpan.FromTicks(123_456_789),
        };

        var json = new RunSpec(settings, 1, [[0, 1, 0]], 0, 1).ToJson();
        var back = RunSpec.FromJson(json).Settings;

        Assert.Contains("\"duration\":\"90s\"", json, StringComparison.Ordinal);
        Assert.Contains("\"step_every\":\"1500ms\"", json, StringComparison.Ordinal);
        Assert.Contains("\"think\":\"250us\"", json, StringComparison.Ordinal);
        Assert.Contains("\"warmup\":null", json, StringComparison.Ordinal);
        Assert.Equal((settings.Duration, settings.StepEvery, settings.SpikeAt, settings.Think, settings.Timeout, settings.MaxGap, settings.Warmup),
            (back.Duration, back.StepEvery, back.SpikeAt, back.Think, back.Timeout, back.MaxGap, back.Warmup));
        Assert.Throws<System.Text.Json.JsonException>(() => RunSpec.FromJson(json.Replace("\"90s\"", "\"90x\"", StringComparison.Ordinal)));
    }
}

namespace Replay.Tests.Cli;

/// <summary>The capacity lab's options are checked before anything is sent: exit 2 and a message naming the flag.</summary>
public sealed class NewOptionTests
{
    private const string Target = "http://127.0.0.1:9";

    public static TheoryData<string[], string> Refused => new()
    {
        { ["load", "--target", Target, "--rate", "10", "--duration", "1s", "--workers", "2"], "--workers needs --redis" },
        { ["load", "--target", Target, "--users", "2", "--duration", "1s", "--workers", "2", "--redis", "127.0.0.1:1"], "closed-model users (--users) are not split" },
        { ["load", "--target", Target, "--rate", "10", "--duration", "1s", "--generate-with", "http://127.0.0.1:9"], "--generate-with needs sessions" },
        { ["load", "--target", Target, "--rate", "10", "--duration", "1s", "--session-arrivals", "--generate-with", "nope"], "--generate-with 'nope' is not an absolute" },
        { ["load", "--target", Target, "--rate", "10", "--duration", "1s", "--session-arrivals", "--generate-with", Target, "--turns", "0"], "--turns must be between 1 and 1000" },
        { ["load", "--target", Target, "--rate", "10", "--duration", "1s", "--connections", "0"], "--connections must be >= 1" },
        { ["sweep", "--target", Target, "--rate", "0"], "--rate (the first step's rate, requests/s) must be > 0 (was 0); leave it out to calibrate" },
        { ["sweep", "--target", Target, "--rate", "10", "--to", "5"], "--to must be > 0 and >= --rate (was 5)" },
        { ["sweep", "--target", Target, "--rate", "10", "--users", "3"], "do not apply to sweep" },
        { ["sweep", "--target", Target, "--rate", "10", "--step-every", "100ms"], "--step-every must be a duration of at least 1s" },
        { ["sweep", "--target", Target, "--rate", "10", "--workers", "2", "--redis", "127.0.0.1:1"], "--workers and --generate-with do not apply to sweep" },
        { ["worker"], "--redis" },
    };

    [Theory(Timeout = 30_000)]
    [MemberData(nameof(Refused))]
    public async Task A_bad_combination_is_refused_naming_the_flag(string[] args, string expected)
    {
        var result = await TestHost.RunAsync(args);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains(expected, result.Error, StringComparison.Ordinal);
    }
}

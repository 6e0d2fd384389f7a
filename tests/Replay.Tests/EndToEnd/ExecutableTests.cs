using TestSupport;

namespace Replay.Tests.EndToEnd;

/// <summary>The real built executable, as a user runs it: its output and exit codes.</summary>
[Collection(RealTimeGroup.Name)]
public sealed class ExecutableTests
{
    private static string Executable => Processes.ReplayExecutable;

    [Fact(Timeout = 60_000)]
    public async Task The_executable_runs_a_load_and_returns_the_assertion_exit_codes()
    {
        Assert.True(File.Exists(Executable), $"{Executable} not built");
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();
        string[] args = ["load", "--target", sim.HttpAddress.ToString(), "--rate", "50", "--duration", "1s", "--max-tokens", "2", "--report", dir.Path];

        await using (var ok = ChildProcess.Start(Executable, [.. args, "--assert", "error_rate<1%"]))
        {
            Assert.Equal(0, await ok.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            Assert.Contains("requests      50", ok.StandardOutput, StringComparison.Ordinal);
            Assert.True(File.Exists(Path.Combine(dir.Path, "report.html")));
        }

        await using (var failed = ChildProcess.Start(Executable, [.. args, "--assert", "requests>=51"]))
        {
            Assert.Equal(1, await failed.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        }

        await using (var usage = ChildProcess.Start(Executable, ["load", "--rate", "x"]))
        {
            Assert.Equal(2, await usage.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            Assert.Contains("--rate", usage.StandardError, StringComparison.Ordinal);
        }
    }
}

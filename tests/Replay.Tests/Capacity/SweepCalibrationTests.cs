using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Replay.Tests.Capacity;

/// <summary><c>replay sweep</c> without <c>--rate</c>: calibrates one request at a time, then steps up from 1 / service time.</summary>
[Collection(RealTimeGroup.Name)]
public sealed partial class SweepCalibrationTests
{
    [Fact(Timeout = 90_000)]
    public async Task A_sweep_without_rate_calibrates_its_first_rate_from_the_service_time()
    {
        // About 1 ms prefill + 4 tokens x 5 ms: ~21 ms of service time, so one request at a time sustains ~45/s.
        await using var sim = await TestHost.StartSimAsync(perTokenMs: 5);
        using var dir = TestHost.CreateTempDirectory();

        var sweep = await TestHost.RunAsync("sweep", "--target", sim.HttpAddress.ToString(), "--to", "60", "--step-every", "1s", "--max-tokens", "4",
            "--progress", "none", "--report", dir.Path);

        Assert.True(sweep.ExitCode == 0, sweep.ToString());
        Assert.Contains("calibrating: one request at a time", sweep.Output, StringComparison.Ordinal);
        var first = double.Parse(FirstRate().Match(sweep.Output).Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.InRange(first, 10, 50); // 1 / (service time >= 21 ms), on a loaded machine maybe slower
        Assert.Matches(string.Create(CultureInfo.InvariantCulture, $@"\n\s+1\s+{first:0.##}\s"), sweep.Output); // the first step runs at it
    }

    [Fact(Timeout = 60_000)]
    public async Task A_calibration_without_any_success_says_so_and_asks_for_rate()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var app = builder.Build();
        app.MapPost("/v1/chat/completions", static () => Results.StatusCode(500));
        await app.StartAsync();

        var sweep = await TestHost.RunAsync("sweep", "--target", app.Urls.Single(), "--step-every", "1s", "--progress", "none");

        Assert.True(sweep.ExitCode == 1, sweep.ToString());
        Assert.Contains("calibration: none of", sweep.Error, StringComparison.Ordinal);
        Assert.Contains("give --rate", sweep.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", sweep.Error, StringComparison.Ordinal); // no stack trace
    }

    [GeneratedRegex(@"first rate ([0-9.]+)/s")]
    private static partial Regex FirstRate();
}

using ModelSim;

namespace Replay.Tests.Reporting;

/// <summary><c>replay compare</c>: two runs side by side, on the console and in one page holding both runs' figures.</summary>
public sealed class CompareCommandTests
{
    [Fact]
    public async Task Compare_puts_both_runs_figures_side_by_side_in_a_table_and_a_page()
    {
        using var dir = TestHost.CreateTempDirectory();
        await using var roomy = await TestHost.StartSimAsync(perTokenMs: 1);
        await using var tight = await ModelSimServer.StartAsync(new Dictionary<string, string?> { ["Sim:Slots"] = "1", ["Sim:Queue"] = "0", ["Sim:PerTokenMs"] = "20" });
        var a = Path.Combine(dir.Path, "straight");
        var b = Path.Combine(dir.Path, "refusing");
        Assert.Equal(0, (await TestHost.RunAsync("load", "--target", roomy.HttpAddress.ToString(), "--rate", "40", "--duration", "2s", "--max-tokens", "4", "--report", a, "--progress", "none")).ExitCode);
        Assert.Equal(0, (await TestHost.RunAsync("load", "--target", tight.HttpAddress.ToString(), "--rate", "40", "--duration", "2s", "--max-tokens", "4", "--report", b, "--progress", "none")).ExitCode);
        var page = Path.Combine(dir.Path, "out", "compare.html");

        var result = await TestHost.RunAsync("compare", a, Path.Combine(b, "report.json"), "--label-a", "roomy", "--label-b", "tight", "--out", page);

        Assert.True(result.ExitCode == 0, result.ToString());
        var refusedLine = result.Output.Split('\n').Single(l => l.StartsWith("refused (any protocol)", StringComparison.Ordinal));
        var columns = refusedLine.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("0", columns[^2]);               // the roomy simulator refused nothing
        Assert.True(int.Parse(columns[^1], System.Globalization.NumberStyles.AllowThousands, System.Globalization.CultureInfo.InvariantCulture) > 40, refusedLine); // the tight one refused most of 80
        Assert.Contains("requests", result.Output, StringComparison.Ordinal);
        var html = await File.ReadAllTextAsync(page);
        Assert.Contains("roomy", html, StringComparison.Ordinal);
        Assert.Contains("tight", html, StringComparison.Ordinal);
        Assert.Contains(columns[^1], html, StringComparison.Ordinal);
        Assert.Contains("../straight/report.html", html, StringComparison.Ordinal);
        Assert.Equal(5, html.Split("<svg").Length - 1); // p95, completed, refused, and each run's status mix over time
        Assert.Contains("Refusals by limit", html, StringComparison.Ordinal);
        Assert.DoesNotContain("http://", html.Replace("http://www.w3.org/2000/svg", "", StringComparison.Ordinal).Replace(roomy.HttpAddress.ToString(), "", StringComparison.Ordinal).Replace(tight.HttpAddress.ToString(), "", StringComparison.Ordinal), StringComparison.Ordinal); // nothing fetched
    }

    [Fact]
    public async Task Compare_writes_into_a_directory_given_as_out_and_refuses_an_unwritable_path()
    {
        using var dir = TestHost.CreateTempDirectory();
        await using var sim = await TestHost.StartSimAsync(perTokenMs: 1);
        var a = Path.Combine(dir.Path, "a");
        Assert.Equal(0, (await TestHost.RunAsync("load", "--target", sim.HttpAddress.ToString(), "--rate", "20", "--duration", "1s", "--max-tokens", "2", "--report", a, "--progress", "none")).ExitCode);
        var outDir = Directory.CreateDirectory(Path.Combine(dir.Path, "pages")).FullName;

        var result = await TestHost.RunAsync("compare", a, a, "--out", outDir);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.True(File.Exists(Path.Combine(outDir, "compare.html")), result.ToString());

        var blocker = Path.Combine(dir.Path, "file");
        await File.WriteAllTextAsync(blocker, "x");
        var bad = await TestHost.RunAsync("compare", a, a, "--out", Path.Combine(blocker, "compare.html")); // a file stands where a directory must be
        Assert.True(bad.ExitCode == 2, bad.ToString());
        Assert.Contains("cannot write", bad.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", bad.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Compare_refuses_a_missing_or_broken_report_with_exit_2()
    {
        using var dir = TestHost.CreateTempDirectory();
        var broken = Path.Combine(dir.Path, "report.json");
        await File.WriteAllTextAsync(broken, "{ not json");

        var missing = await TestHost.RunAsync("compare", Path.Combine(dir.Path, "nope"), broken);
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("has no report.json", missing.Error, StringComparison.Ordinal);

        var bad = await TestHost.RunAsync("compare", broken, broken);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("is not valid JSON", bad.Error, StringComparison.Ordinal);
    }
}

using System.Globalization;
using ModelSim;
using OpenQA.Selenium;
using TestSupport;

namespace Replay.Tests.Reporting;

/// <summary>
/// compare.html in a real headless browser (test.sh installs chromium and chromedriver): two runs of very different
/// scales, a fast model server and a saturated one (p95 of milliseconds beside seconds), both readable on the latency
/// chart; issue 16 ("a 2.8 s p95 is a flat line under a 100 s axis"). The screenshot is kept as an artifact.
/// </summary>
public sealed class ComparePageBrowserTests
{
    [Fact]
    public async Task Compare_page_draws_runs_of_very_different_scales_on_a_log_axis_both_visible_in_a_screenshot()
    {
        using var dir = TestHost.CreateTempDirectory();
        await using var fast = await TestHost.StartSimAsync(perTokenMs: 1);
        // One slot and a long queue: at 40 req/s of about 120 ms each the queue grows for the whole run, p95 in seconds.
        await using var slow = await ModelSimServer.StartAsync(new Dictionary<string, string?> { ["Sim:Slots"] = "1", ["Sim:Queue"] = "1000", ["Sim:PerTokenMs"] = "30" });
        var a = Path.Combine(dir.Path, "fast");
        var b = Path.Combine(dir.Path, "slow");
        Assert.Equal(0, (await TestHost.RunAsync("load", "--target", fast.HttpAddress.ToString(), "--rate", "40", "--duration", "4s", "--max-tokens", "4", "--report", a, "--progress", "none")).ExitCode);
        Assert.Equal(0, (await TestHost.RunAsync("load", "--target", slow.HttpAddress.ToString(), "--rate", "40", "--duration", "2s", "--max-tokens", "4", "--report", b, "--progress", "none")).ExitCode);
        var page = Path.Combine(dir.Path, "compare.html");
        var result = await TestHost.RunAsync("compare", a, b, "--label-a", "fast", "--label-b", "slow", "--out", page);
        Assert.True(result.ExitCode == 0, result.ToString());
        var html = await File.ReadAllTextAsync(page);
        Assert.True(html.Contains("Log scale", StringComparison.Ordinal), result.Output);
        // Stranger review of issue 16: the text said "each gridline ten times the one below" over gridlines at 1-2-5 steps.
        Assert.DoesNotContain("each gridline ten times", html, StringComparison.Ordinal);
        Assert.Contains("2 and 5 times the power of ten", html, StringComparison.Ordinal);
        Assert.Contains("stroke=\"#f4f4f4\"", html, StringComparison.Ordinal); // the 2x and 5x gridlines the text describes are drawn

        using var driver = HeadlessChromium.Start(1280, 2400);
        try
        {
            driver.Navigate().GoToUrl(new Uri(page).AbsoluteUri);
            // Each line of the p95 chart, as the browser laid it out: its box in the SVG's units, and the plot area's.
            var boxes = (IReadOnlyCollection<object>)((IJavaScriptExecutor)driver).ExecuteScript("""
                const h = [...document.querySelectorAll('h2')].find(e => e.textContent.startsWith('Latency p95'));
                let svg = h.nextElementSibling; while (svg && svg.tagName.toLowerCase() !== 'svg') svg = svg.nextElementSibling;
                svg.scrollIntoView();
                return [...svg.querySelectorAll('polyline[data-series]')].map(p => { const b = p.getBBox();
                  return [p.dataset.series, b.y, b.height, +svg.dataset.plotTop, +svg.dataset.plotBottom, svg.dataset.scale || 'linear']; });
                """)!;
            var lines = boxes.Cast<IReadOnlyCollection<object>>().Select(static l => l.ToArray())
                .Select(static l => (Series: (string)l[0], Y: D(l[1]), Height: D(l[2]), Top: D(l[3]), Bottom: D(l[4]), Scale: (string)l[5])).ToList();
            Assert.Equal("log", lines[0].Scale);
            var fastLine = Assert.Single(lines, static l => l.Series == "fast p95");
            var slowLine = Assert.Single(lines, static l => l.Series == "slow p95");
            var plotHeight = fastLine.Bottom - fastLine.Top;
            // On a linear axis up to seconds the fast run's milliseconds sit within a unit of the bottom; here clearly above
            // it (on a quiet machine the fast run's p95 is near the log axis's floor: 6 units of 190 seen, so 4 is the bound).
            Assert.True(fastLine.Bottom - (fastLine.Y + fastLine.Height) >= 0 && fastLine.Bottom - fastLine.Y >= 4,
                $"the fast run's line hugs the bottom of the axis: top at {fastLine.Y:0.#}, plot {fastLine.Top}..{fastLine.Bottom}");
            // The slow run's queue grows through the run: its line climbs, and stays inside the plot.
            Assert.True(slowLine.Height >= 0.1 * plotHeight, $"the slow run's line is flat: {slowLine.Height:0.#} of {plotHeight} units");
            Assert.True(slowLine.Y >= fastLine.Top - 1 && slowLine.Y + slowLine.Height <= fastLine.Bottom + 1, "the slow run's line leaves the plot");
            Assert.True(slowLine.Y < fastLine.Y, "the slow run is drawn below the fast one");

            var png = Path.Combine(dir.Path, "compare.png");
            ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(png);
            var bytes = await File.ReadAllBytesAsync(png);
            Assert.True(bytes.Length > 10_000, $"screenshot of {bytes.Length} bytes");
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
            var width = (bytes[16] << 24) | (bytes[17] << 16) | (bytes[18] << 8) | bytes[19]; // IHDR
            Assert.True(width >= 900, $"screenshot {width} px wide");
            var keep = Environment.GetEnvironmentVariable("TEST_ARTIFACTS");
            if (!string.IsNullOrEmpty(keep))
            {
                Directory.CreateDirectory(keep);
                File.Copy(png, Path.Combine(keep, "compare.png"), overwrite: true);
            }
        }
        finally
        {
            driver.Quit();
        }
    }

    private static double D(object value) => Convert.ToDouble(value, CultureInfo.InvariantCulture);
}

using System.Net.Http.Json;
using System.Text.Json;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using TestSupport;

namespace Gateway.Tests.Admin;

/// <summary>
/// The dashboard in a real headless browser (Debian's chromium and chromedriver, installed by test.sh): it shows live
/// numbers that change after traffic, and a recording started from its button appears in the admin API.
/// </summary>
[Collection(SerialTests.Name)]
public sealed class DashboardBrowserTests
{
    [Fact]
    public async Task Dashboard_shows_live_numbers_and_starts_a_recording_from_its_button()
    {
        var recordings = Directory.CreateTempSubdirectory("gw-dash-").FullName;
        var options = new GatewayHarness.Options();
        options.Gateway["Gateway:Recording:Directory"] = recordings;
        await using var h = await GatewayHarness.StartAsync(options);
        using var driver = StartBrowser();
        try
        {
            driver.Navigate().GoToUrl(h.Admin);
            var wait = new OpenQA.Selenium.Support.UI.WebDriverWait(driver, TimeSpan.FromSeconds(15));
            wait.Until(d => d.FindElement(By.Id("uptime")).Text.StartsWith("up ", StringComparison.Ordinal));
            var totalBefore = driver.FindElement(By.Id("total")).Text;

            using var client = new HttpClient { BaseAddress = h.Http };
            for (var i = 0; i < 12; i++)
            {
                (await client.PostAsJsonAsync("/v1/generate", new { prompt = "dashboard", max_tokens = 2 })).EnsureSuccessStatusCode();
            }

            wait.Until(d => d.FindElement(By.Id("total")).Text == "12");
            Assert.Equal("0", totalBefore);
            wait.Until(d => d.FindElement(By.Id("routes")).Text.Contains("openai", StringComparison.Ordinal));
            Assert.NotEqual("–", driver.FindElement(By.Id("p95")).Text);

            var name = driver.FindElement(By.Id("rec-name"));
            name.Clear();
            name.SendKeys("from-the-button");
            driver.FindElement(By.Id("rec-start")).Click();

            using var admin = new HttpClient { BaseAddress = h.Admin };
            await Eventually.TrueAsync(async () =>
            {
                using var doc = JsonDocument.Parse(await admin.GetStringAsync("/admin/recordings"));
                return doc.RootElement.GetProperty("recordings").EnumerateArray().Any(r =>
                    r.GetProperty("name").GetString() == "from-the-button" && r.GetProperty("state").GetString() == "recording");
            }, TimeSpan.FromSeconds(10), () => "the recording started from the dashboard's button is not in GET /admin/recordings");
            wait.Until(d => d.FindElement(By.Id("recordings")).Text.Contains("from-the-button", StringComparison.Ordinal));
        }
        finally
        {
            driver.Quit();
            Directory.Delete(recordings, recursive: true);
        }
    }

    private static ChromeDriver StartBrowser()
    {
        const string Browser = "/usr/bin/chromium", Driver = "/usr/bin/chromedriver";
        if (!File.Exists(Browser) || !File.Exists(Driver))
        {
            throw new InvalidOperationException("chromium and chromium-driver are not installed: run ./test.sh, which installs them (apt-get install chromium chromium-driver).");
        }

        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(Driver)!, Path.GetFileName(Driver));
        service.HideCommandPromptWindow = true;
        service.SuppressInitialDiagnosticInformation = true;
        var options = new ChromeOptions { BinaryLocation = Browser };
        // As root in a container, and with no network beyond loopback: no sandbox, nothing in the background.
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
            $"--user-data-dir={Directory.CreateTempSubdirectory("gw-chromium-").FullName}");
        return new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
    }
}

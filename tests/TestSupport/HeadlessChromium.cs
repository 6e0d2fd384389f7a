using OpenQA.Selenium.Chrome;

namespace TestSupport;

/// <summary>
/// A real headless browser for page tests: Debian's chromium and chromedriver, installed by test.sh. Used by the
/// dashboard's tests (Gateway.Tests) and the comparison page's screenshot test (Replay.Tests).
/// </summary>
public static class HeadlessChromium
{
    private const string Browser = "/usr/bin/chromium";
    private const string Driver = "/usr/bin/chromedriver";

    /// <summary>Starts a headless chromium with a fresh profile and a window of <paramref name="width"/> x <paramref name="height"/> pixels.</summary>
    /// <exception cref="InvalidOperationException">chromium or chromedriver is not installed (run ./test.sh).</exception>
    public static ChromeDriver Start(int width = 1280, int height = 1024)
    {
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
            $"--window-size={width},{height}",
            $"--user-data-dir={Directory.CreateTempSubdirectory("gw-chromium-").FullName}");
        return new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
    }
}

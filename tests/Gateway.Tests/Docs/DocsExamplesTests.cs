using System.Text.RegularExpressions;
using TestSupport;

namespace Gateway.Tests.Docs;

/// <summary>
/// Every <c>curl</c> example in the README and docs/*.md runs, as written, against a real gateway and simulator (their
/// documented default ports rewritten to the test's free ports), and succeeds: the docs cannot go stale silently.
/// </summary>
public sealed partial class DocsExamplesTests
{
    public static TheoryData<string> Documents() => ["README.md", "docs/recording.md", "docs/configuration.md", "docs/replay.md", "docs/modelsim.md", "docs/architecture.md"];

    [Theory]
    [MemberData(nameof(Documents))]
    public async Task Every_curl_example_runs_as_written(string document)
    {
        var examples = CurlExamples(await File.ReadAllTextAsync(RepoPaths.Combine(document.Split('/')))).ToList();
        if (document is "README.md" or "docs/recording.md")
        {
            Assert.True(examples.Count >= 3, $"{document}: only {examples.Count} curl examples found: the extraction is broken");
        }

        if (examples.Count == 0)
        {
            Assert.DoesNotContain("curl ", await File.ReadAllTextAsync(RepoPaths.Combine(document.Split('/'))), StringComparison.Ordinal);
            return;
        }

        var recordings = Directory.CreateTempSubdirectory("gw-docs-").FullName;
        var options = new GatewayHarness.Options();
        options.Gateway["Gateway:Recording:Directory"] = recordings;
        await using var h = await GatewayHarness.StartAsync(options);
        var ports = new Dictionary<string, Uri>
        {
            ["8080"] = h.Http, ["8081"] = h.Grpc, ["8082"] = h.WebSocket, ["8090"] = h.Admin, ["9000"] = h.Sim.HttpAddress, ["9001"] = h.Sim.GrpcAddress,
        };
        try
        {
            foreach (var example in examples)
            {
                var command = PortPattern().Replace(example, m => $"127.0.0.1:{ports[m.Groups[1].Value].Port}");
                await using var process = ChildProcess.Start("bash", ["-c", command]);
                var exit = await process.WaitForExitAsync(TimeSpan.FromSeconds(30));
                Assert.True(exit == 0, $"{document}: `{example}` exited {exit}\n{process.StandardOutput}\n{process.StandardError}");
                Assert.DoesNotContain("\"error\"", process.StandardOutput, StringComparison.Ordinal);
            }
        }
        finally
        {
            Directory.Delete(recordings, recursive: true);
        }
    }

    /// <summary>The curl commands of a document's sh code blocks, continuation lines joined, in order.</summary>
    internal static IEnumerable<string> CurlExamples(string markdown)
    {
        foreach (Match block in ShBlock().Matches(markdown))
        {
            var joined = block.Groups[1].Value.Replace("\\\n", " ", StringComparison.Ordinal);
            foreach (var line in joined.Split('\n'))
            {
                var trimmed = line.Trim();
                var comment = trimmed.IndexOf(" # ", StringComparison.Ordinal);
                if (comment > 0)
                {
                    trimmed = trimmed[..comment].TrimEnd();
                }

                if (trimmed.StartsWith("curl ", StringComparison.Ordinal))
                {
                    yield return trimmed.Replace("curl -s ", "curl -sf ", StringComparison.Ordinal).Replace("curl -sN ", "curl -sfN ", StringComparison.Ordinal);
                }
            }
        }
    }

    [GeneratedRegex(@"```sh\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex ShBlock();

    [GeneratedRegex(@"127\.0\.0\.1:(8080|8081|8082|8090|9000|9001)\b")]
    private static partial Regex PortPattern();
}

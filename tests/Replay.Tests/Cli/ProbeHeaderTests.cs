using System.Security.Cryptography;
using System.Text;

namespace Replay.Tests.Cli;

/// <summary>
/// Stranger review of issue 13, R9: <c>replay probe --header</c> sends its headers on HTTP, gRPC (metadata) and the
/// WebSocket upgrade, so a gateway that requires an API key can be probed (without it every probe is refused).
/// </summary>
public sealed class ProbeHeaderTests
{
    [Fact]
    public async Task Stranger_review_R9_probe_with_header_passes_an_authenticated_gateway_and_fails_without()
    {
        const string key = "probe-test-key-0123456789";
        await using var sim = await TestHost.StartSimAsync(perTokenMs: 1);
        await using var gw = await TestHost.StartGatewayAsync(sim, new Dictionary<string, string?>
        {
            ["Gateway:Auth:Mode"] = "ApiKey",
            ["Gateway:Tenants:probe:Keys:0"] = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key))),
            ["Gateway:Admin:WarmupRequests"] = "0",
        });
        var http = gw.GetAddress("Http")!.ToString();
        var grpc = gw.GetAddress("Grpc")!.ToString();
        var ws = new UriBuilder(gw.GetAddress("WebSocket")!) { Scheme = "ws" }.Uri.ToString();

        var refused = await TestHost.RunAsync("probe", "--http", http, "--grpc", grpc, "--websocket", ws, "--timeout", "10");
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("HTTP 401", refused.Error, StringComparison.Ordinal);

        var ok = await TestHost.RunAsync("probe", "--http", http, "--grpc", grpc, "--websocket", ws, "--timeout", "10", "-H", "Authorization: Bearer " + key);
        Assert.True(ok.ExitCode == 0, ok.ToString());
        Assert.Contains("http chat: ok", ok.Output, StringComparison.Ordinal);
        Assert.Contains("grpc unary: ok", ok.Output, StringComparison.Ordinal);
        Assert.Contains("websocket: ok", ok.Output, StringComparison.Ordinal);

        var bad = await TestHost.RunAsync("probe", "--http", http, "-H", "no-colon");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("--header 'no-colon' is not 'Name: value'", bad.Error, StringComparison.Ordinal);
    }
}

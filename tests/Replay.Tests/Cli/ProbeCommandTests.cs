namespace Replay.Tests.Cli;

/// <summary><c>replay probe</c>: one request per protocol, what came back printed, the exit code saying whether all succeeded.</summary>
public sealed class ProbeCommandTests
{
    [Fact]
    public async Task Probe_reaches_every_protocol_and_reports_what_came_back()
    {
        await using var sim = await TestHost.StartSimAsync(perTokenMs: 1);
        var ws = new UriBuilder(sim.HttpAddress) { Scheme = "ws" }.Uri;

        var result = await TestHost.RunAsync("probe", "--http", sim.HttpAddress.ToString(), "--grpc", sim.GrpcAddress.ToString(), "--websocket", ws.ToString());

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("http chat: ok", result.Output, StringComparison.Ordinal);
        Assert.Contains("8 tokens", result.Output, StringComparison.Ordinal);
        Assert.Contains("http sse: ok", result.Output, StringComparison.Ordinal);
        Assert.Contains("grpc unary: ok", result.Output, StringComparison.Ordinal);
        Assert.Contains("grpc stream: ok in", result.Output, StringComparison.Ordinal);
        Assert.Contains("4 token messages", result.Output, StringComparison.Ordinal);
        Assert.Contains("websocket: ok", result.Output, StringComparison.Ordinal);
        Assert.Contains("3 + 2 tokens", result.Output, StringComparison.Ordinal);
        Assert.Equal(4 + 2, sim.Stats.Completed);
    }

    [Fact]
    public async Task Probe_fails_with_exit_1_when_a_target_does_not_answer_and_2_for_a_bad_url()
    {
        var unreachable = await TestHost.RunAsync("probe", "--grpc", "http://127.0.0.1:9", "--timeout", "3");
        Assert.Equal(1, unreachable.ExitCode);
        Assert.Contains("grpc unary: FAILED", unreachable.Error, StringComparison.Ordinal);

        var bad = await TestHost.RunAsync("probe", "--websocket", "http://not-a-ws-url");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("--websocket 'http://not-a-ws-url' is not an absolute ws, wss URL", bad.Error, StringComparison.Ordinal);

        var none = await TestHost.RunAsync("probe");
        Assert.Equal(2, none.ExitCode);
    }
}

using Contracts.Tokens;
using Replay.Clients;
using Replay.Sources;

namespace Replay.Tests.Sources;

public sealed class SourceTests
{
    [Fact]
    public async Task Azure_rows_become_timed_requests_and_malformed_rows_are_skipped()
    {
        using var dir = TestHost.CreateTempDirectory();
        var csv = dir.Combine("trace.csv");
        await File.WriteAllTextAsync(csv, """
            TIMESTAMP,ContextTokens,GeneratedTokens
            2023-11-16 18:15:46.6805900,374,44
            2023-11-16 18:15:47.1805900,12,three
            2023-11-16 18:15:50.9951690,396,109
            garbage
            2023-11-16 18:16:50.0000000,5,5
            """);

        var workload = await AzureTraceSource.LoadAsync(csv, new SourceSettings { SourceDuration = TimeSpan.FromSeconds(60), Stream = true }, CancellationToken.None);

        Assert.Equal(2, workload.Sessions.Count);
        Assert.Equal(2, workload.SkippedTotal);
        Assert.Equal(0, workload.Sessions[0].StartOffsetMs, 3);
        Assert.Equal(4314.579, workload.Sessions[1].StartOffsetMs, 3);
        var prompt = workload.Sessions[1].Requests[0].Prompt!;
        Assert.Equal(396, prompt.PromptTokens);
        Assert.Equal(109, prompt.MaxTokens);
        Assert.True(prompt.Stream);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(17)]
    [InlineData(4096)]
    public void A_generated_body_holds_a_prompt_of_exactly_the_requested_tokens(int tokens)
    {
        var text = PromptBody.ToText(new SyntheticPrompt(tokens, 7, "m\"x", Stream: false));
        using var json = System.Text.Json.JsonDocument.Parse(text);
        var content = json.RootElement.GetProperty("messages")[0].GetProperty("content").GetString();
        Assert.Equal(tokens, TokenCounter.Default.Count(content));
        Assert.Equal(TokenCounter.BuildPrompt(tokens), content);
        Assert.Equal(7, json.RootElement.GetProperty("max_tokens").GetInt32());
        Assert.Equal("m\"x", json.RootElement.GetProperty("model").GetString());
    }

    [Fact]
    public async Task A_template_draws_its_requests_in_proportion_to_their_weights()
    {
        using var dir = TestHost.CreateTempDirectory();
        var path = dir.Combine("t.json");
        await File.WriteAllTextAsync(path, """
            // comments are allowed
            { "requests": [
              { "name": "a", "weight": 3, "body": { "messages": [ { "role": "user", "content": "x" } ] } },
              { "name": "b", "protocol": "grpc", "stream": true, "body": { "prompt": "hi", "max_tokens": 2 } },
              { "name": "c", "protocol": "websocket", "messages": [ { "prompt": "hi" }, "raw" ], "think_ms": 5 },
            ] }
            """);

        var workload = await TemplateSource.LoadAsync(path, new SourceSettings(), CancellationToken.None);

        var routes = workload.Sessions.Select(static s => s.Requests[0].Route).ToList();
        Assert.Equal(5, routes.Count);
        Assert.Equal(3, routes.Count(static r => r == "a"));
        Assert.NotEqual("a", routes[1]); // smooth: the heavy entry does not come in one block
        var ws = workload.Sessions.Single(static s => s.Requests[0].Route == "c").Requests[0];
        Assert.Equal(2, ws.Turns!.Count);
        Assert.Equal(5, ws.Turns[1].ThinkBeforeMs);
        var grpc = workload.Sessions.Single(static s => s.Requests[0].Route == "b").Requests[0];
        Assert.Equal("/inference.v1.Generation/GenerateStream", grpc.PathAndQuery);
        Assert.True(GrpcFraming.TryUnframe(grpc.Body!.Value.Span, out _));
    }

    [Fact]
    public async Task A_recording_becomes_ordered_sessions_with_think_times_and_websocket_turns()
    {
        using var dir = TestHost.CreateTempDirectory();
        await Recordings.WriteCaptureAsync(dir.Path, "capture");
        await using var store = new Contracts.Recording.FileRecordingStore(dir.Path);

        var workload = await RecordingSource.LoadAsync(store, "test store", "capture", new SourceSettings(), CancellationToken.None);

        Assert.Equal(10, workload.Sessions.Count);
        Assert.Equal(28, workload.RequestCount);
        var http = workload.Sessions.Single(static s => s.Id == "http-1");
        Assert.Equal(900, http.StartOffsetMs, 3);
        Assert.Equal([0, 400, 400], http.Requests.Select(static r => r.ThinkBeforeMs));
        Assert.DoesNotContain(http.Requests[0].Headers, static h => h.Key is "Host" or "Authorization"); // hop-by-hop and redacted
        var ws = workload.Sessions.Single(static s => s.Id == "ws-0").Requests.Single();
        Assert.Equal(RequestProtocol.WebSocket, ws.Protocol);
        Assert.Equal([10, 400, 400], ws.Turns!.Select(static t => t.ThinkBeforeMs));

        var cut = await RecordingSource.LoadAsync(store, "test store", "capture", new SourceSettings { SourceDuration = TimeSpan.FromSeconds(2) }, CancellationToken.None);
        Assert.All(cut.Sessions, static s => Assert.True(s.StartOffsetMs < 2000));
        var limited = await RecordingSource.LoadAsync(store, "test store", "capture", new SourceSettings { Limit = 5 }, CancellationToken.None);
        Assert.Equal(5, limited.Sessions.Sum(static s => s.Requests.Count));
    }
}

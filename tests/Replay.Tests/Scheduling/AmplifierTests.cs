using System.Text;
using Google.Protobuf;
using Inference.V1;
using Replay.Clients;
using Replay.Scheduling;
using Replay.Sources;

namespace Replay.Tests.Scheduling;

public sealed class AmplifierTests
{
    private static List<PlannedSession> Sessions(int n) =>
        [.. Enumerable.Range(0, n).Select(static i => new PlannedSession
        {
            Id = $"s{i}",
            OriginalId = $"s{i}",
            StartOffsetMs = i * 100,
            Requests =
            [
                new PlannedRequest
                {
                    Protocol = RequestProtocol.Http,
                    PathAndQuery = "/v1/chat/completions",
                    Route = "chat",
                    Headers = [new("x-session-id", $"s{i}"), new("content-type", "application/json")],
                    Body = Encoding.UTF8.GetBytes($"{{\"session_id\":\"s{i}\"}}"),
                },
                new PlannedRequest { Protocol = RequestProtocol.Http, PathAndQuery = "/v1/models", Route = "models", ThinkBeforeMs = 250 },
            ],
        })];

    [Theory]
    [InlineData(3, 300)]
    [InlineData(2.5, 250)]
    [InlineData(1.1, 110)]
    [InlineData(0.5, 50)]
    public void Amplifying_multiplies_the_sessions_exactly(double factor, int expected)
    {
        var result = Amplifier.Amplify(Sessions(100), factor, 1000, 1, "x-session-id");
        Assert.Equal(expected, result.Count);
        Assert.Equal(result.Count, result.Select(static s => s.Id).Distinct().Count());
    }

    [Fact]
    public void Clones_get_fresh_ids_in_header_and_body_keep_their_requests_in_order_and_start_within_the_spread()
    {
        var result = Amplifier.Amplify(Sessions(10), 3, 500, 1, "x-session-id");
        for (var i = 1; i < result.Count; i++)
        {
            Assert.True(result[i].StartOffsetMs >= result[i - 1].StartOffsetMs);
        }

        foreach (var clone in result.Where(static s => s.Id != s.OriginalId))
        {
            var original = result.Single(s => s.Id == clone.OriginalId);
            Assert.InRange(clone.StartOffsetMs - original.StartOffsetMs, 0, 500);
            Assert.Equal(clone.Id, clone.Requests[0].Headers.Single(static h => h.Key == "x-session-id").Value);
            Assert.Equal($"{{\"session_id\":\"{clone.Id}\"}}", Encoding.UTF8.GetString(clone.Requests[0].Body!.Value.Span));
            Assert.Equal(["chat", "models"], clone.Requests.Select(static r => r.Route));
            Assert.Same(original.Requests[1], clone.Requests[1]); // nothing to rewrite: shared, not copied
            Assert.Equal(250, clone.Requests[1].ThinkBeforeMs);
        }
    }

    [Fact]
    public void A_grpc_session_id_is_rewritten_inside_the_protobuf_message()
    {
        var request = new PlannedRequest
        {
            Protocol = RequestProtocol.Grpc,
            PathAndQuery = "/inference.v1.Generation/Generate",
            Route = "generate",
            Body = GrpcFraming.Frame(new GenerateRequest { Prompt = "hi", MaxTokens = 3, SessionId = "abc" }),
        };

        var clone = Amplifier.Rewrite(request, "abc", "abc~1", "x-session-id");

        Assert.True(GrpcFraming.TryUnframe(clone.Body!.Value.Span, out var message));
        var parsed = GenerateRequest.Parser.ParseFrom(message);
        Assert.Equal("abc~1", parsed.SessionId);
        Assert.Equal("hi", parsed.Prompt);
    }

    // Found by a newcomer's review of issue 15: the session id was replaced as a substring everywhere, so sessions named
    // "1" and "user" turned "max_tokens":16 into 1~16 and "role":"user" into "user~1" (invalid requests for any real
    // server). Only the session header's value and the JSON session fields' exact values are rewritten.
    [Fact]
    public void Only_the_session_header_and_json_session_fields_are_rewritten_never_a_substring()
    {
        var body = """{"model":"m","max_tokens":16,"session_id":"user","messages":[{"role":"user","content":"tell the user a story"}],"metadata":{"user":"user"}}""";
        var request = new PlannedRequest
        {
            Protocol = RequestProtocol.Http,
            PathAndQuery = "/v1/chat/completions",
            Route = "chat",
            Headers = [new("x-session-id", "user"), new("x-other", "user agent")],
            Body = Encoding.UTF8.GetBytes(body),
        };

        var clone = Amplifier.Rewrite(request, "user", "user~1", "x-session-id");

        Assert.Equal(
            """{"model":"m","max_tokens":16,"session_id":"user~1","messages":[{"role":"user","content":"tell the user a story"}],"metadata":{"user":"user~1"}}""",
            Encoding.UTF8.GetString(clone.Body!.Value.Span));
        Assert.Equal([new("x-session-id", "user~1"), new("x-other", "user agent")], clone.Headers);

        var numeric = request with { Body = Encoding.UTF8.GetBytes("""{"max_tokens":1,"session_id":"1"}"""), Headers = [] };
        Assert.Equal("""{"max_tokens":1,"session_id":"1~1"}""", Encoding.UTF8.GetString(Amplifier.Rewrite(numeric, "1", "1~1", "x-session-id").Body!.Value.Span));
        var notJson = request with { Body = Encoding.UTF8.GetBytes("user user"), Headers = [] };
        Assert.Same(notJson, Amplifier.Rewrite(notJson, "user", "user~1", "x-session-id"));
    }

    [Fact]
    public void Speed_divides_offsets_and_think_times()
    {
        var scaled = Planner.Scale(Sessions(3), 2, scaleOffsets: true);
        Assert.Equal([0, 50, 100], scaled.Select(static s => s.StartOffsetMs));
        Assert.All(scaled, static s => Assert.Equal(125, s.Requests[1].ThinkBeforeMs));
    }
}

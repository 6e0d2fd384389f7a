using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Contracts.Recording;
using Gateway.Tests.Forwarding;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Recording;

/// <summary>
/// The request body is recorded as the client sent it, whichever step read it first (a <c>json:</c> session source) and
/// whatever the gateway forwards instead (a token limit asking a stream for its usage), so a replay sends it again.
/// </summary>
public sealed class RecordedRequestBodyTests(RedisFixture redis) : IClassFixture<RedisFixture>
{
    public static TheoryData<string> Stores() => ["file", "redis"];

    private static GatewayHarness.Options TokenLimited() => new()
    {
        Edit = With(Policies(("tpm", new JsonObject { ["Kind"] = "Tokens", ["TokensPerMinute"] = 2_000_000, ["Partition"] = "ApiKey" })), openaiPolicies: "tpm"),
    };

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task A_rewritten_stream_keeps_the_clients_body_with_the_session_from_the_body(string store)
    {
        await using var r = await RecordingHarness.StartAsync(store == "redis" ? redis.Server : null, TokenLimited());
        var name = "body-" + store + "-" + Guid.NewGuid().ToString("N")[..6];
        await r.StartRecordingAsync(name);
        using var http = new HttpClient { BaseAddress = r.H.Http, Timeout = TimeSpan.FromSeconds(30) };

        // The session comes from the body, and the token limit adds stream_options.include_usage to what it forwards.
        var fromBody = """{"model":"sim-llm","session_id":"D","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"stream":true}""";
        var fromHeader = """{"model":"sim-llm","messages":[{"role":"user","content":"hello"}],"max_tokens":4,"stream":true}""";
        using (var response = await http.PostAsync("/v1/chat/completions", new StringContent(fromBody, Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await response.Content.ReadAsStringAsync();
        }

        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(fromHeader, Encoding.UTF8, "application/json") })
        {
            request.Headers.Add("x-session-id", "H");
            using var response = await http.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await response.Content.ReadAsStringAsync();
        }

        await r.StopRecordingAsync(name);
        await r.WaitAccountedAsync(2, TimeSpan.FromSeconds(15));
        var records = await r.ReadAsync(name);
        Assert.Equal(2, records.Count);

        foreach (var (session, sent) in new[] { ("D", fromBody), ("H", fromHeader) })
        {
            var x = records.Single(e => e.SessionId == session);
            var body = x.Request.Body;
            Assert.NotNull(body);
            Assert.Equal(sent, body.Text);
            Assert.Equal(Encoding.UTF8.GetByteCount(sent), body.Length);
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sent))), body.Sha256);
            Assert.Equal(Encoding.UTF8.GetByteCount(sent).ToString(System.Globalization.CultureInfo.InvariantCulture),
                x.Request.Headers.Single(h => h.Name.Equals("content-length", StringComparison.OrdinalIgnoreCase)).Value);
            Assert.DoesNotContain(x.Units!, u => u.Text?.Contains("\"usage\"", StringComparison.Ordinal) == true && u.Text.Contains("\"choices\":[]", StringComparison.Ordinal));

            // Replayed as recorded (what the replay tool sends: method, path, the body), the model server serves it again.
            using var replay = new HttpRequestMessage(new HttpMethod(x.Request.Method), x.Request.Path) { Content = new StringContent(body.Text!, Encoding.UTF8) };
            replay.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(x.Request.Headers.Single(h => h.Name.Equals("content-type", StringComparison.OrdinalIgnoreCase)).Value);
            using var again = await http.SendAsync(replay);
            Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        }
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task A_session_id_that_is_not_text_is_recorded_with_the_400(string store)
    {
        await using var r = await RecordingHarness.StartAsync(store == "redis" ? redis.Server : null, TokenLimited());
        var name = "badtext-" + store + "-" + Guid.NewGuid().ToString("N")[..6];
        await r.StartRecordingAsync(name);
        using var http = new HttpClient { BaseAddress = r.H.Http, Timeout = TimeSpan.FromSeconds(30) };

        var bodies = new[]
        {
            RequestBodyTests.Bytes("""{"model":"sim-llm","session_id":"#","messages":[{"role":"user","content":"hi"}],"max_tokens":2}""", 0xFF),
            RequestBodyTests.Bytes("""{"model":"sim-llm","session_id":"\ud800x","messages":[{"role":"user","content":"hi"}],"max_tokens":2}"""),
        };
        foreach (var bytes in bodies)
        {
            var content = new ByteArrayContent(bytes);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            using var response = await http.PostAsync("/v1/chat/completions", content);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{(int)response.StatusCode} {text}");
            Assert.Equal("invalid_json", JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("code").GetString());
        }

        await r.StopRecordingAsync(name);
        await r.WaitAccountedAsync(2, TimeSpan.FromSeconds(15));
        var records = await r.ReadAsync(name);
        Assert.Equal(2, records.Count);
        foreach (var x in records)
        {
            Assert.Equal(400, x.Response.Status);
            Assert.StartsWith("gen-", x.SessionId, StringComparison.Ordinal); // no usable id in the body: a session of its own
            Assert.Equal(Outcomes.Completed, x.Outcome);
        }

        // Bytes that are not UTF-8 are kept as base64, exactly; the escape is valid UTF-8 and kept as text.
        Assert.Contains(records, x => x.Request.Body?.Base64 is { } b && Convert.FromBase64String(b).AsSpan().SequenceEqual(bodies[0]));
        Assert.Contains(records, x => x.Request.Body?.Text == Encoding.UTF8.GetString(bodies[1]));
    }
}

using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// Request bodies that the gateway reads before forwarding them (a token limit counting the prompt, a <c>json:</c>
/// session source): what the client sent is forwarded whole or refused in the client's terms, however it is framed.
/// </summary>
public sealed class RequestBodyTests
{
    /// <summary>The openai route with a request limit and a token limit, as in config/protect-sim.json.</summary>
    private static Action<JsonObject> ProtectSim => With(
        Policies(
            ("per-key", new JsonObject { ["Kind"] = "TokenBucket", ["TokenLimit"] = 400, ["TokensPerPeriod"] = 200, ["ReplenishmentPeriod"] = "00:00:01", ["Partition"] = "ApiKey" }),
            ("tokens-per-key", new JsonObject { ["Kind"] = "Tokens", ["TokensPerMinute"] = 2_000_000, ["Partition"] = "ApiKey" })),
        openaiPolicies: "per-key,tokens-per-key");

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_oversized_chunked_body_gets_413_like_one_with_a_content_length(bool tokenLimit)
    {
        // The body limit above the inspection limit, as by default (10 MiB and 1 MiB), at a smaller scale.
        var options = new GatewayHarness.Options { Edit = tokenLimit ? ProtectSim : null };
        options.Gateway["Gateway:Limits:MaxRequestBodyBytes"] = "262144";
        options.Gateway["Gateway:Shaping:MaxInspectBytes"] = "65536";
        await using var h = await GatewayHarness.StartAsync(options);
        using var client = new HttpClient { BaseAddress = h.Http, Timeout = TimeSpan.FromSeconds(30) };
        var body = Generate(400_000);

        foreach (var chunked in new[] { false, true })
        {
            using var response = await client.SendAsync(Post(body, chunked));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.RequestEntityTooLarge, $"chunked={chunked}: {(int)response.StatusCode} {text}");
            Assert.Equal("request_too_large", ErrorCode(text));
        }
    }

    [Fact]
    public async Task A_chunked_body_longer_than_the_inspection_limit_is_forwarded_whole()
    {
        var options = new GatewayHarness.Options { Edit = ProtectSim };
        options.Gateway["Gateway:Shaping:MaxInspectBytes"] = "65536";
        await using var h = await GatewayHarness.StartAsync(options);
        using var client = new HttpClient { BaseAddress = h.Http, Timeout = TimeSpan.FromSeconds(30) };
        var body = Generate(100_000);

        var promptTokens = new List<int>();
        foreach (var chunked in new[] { false, true })
        {
            using var response = await client.SendAsync(Post(body, chunked));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"chunked={chunked}: {(int)response.StatusCode} {text}");
            promptTokens.Add(JsonDocument.Parse(text).RootElement.GetProperty("prompt_tokens").GetInt32());
        }

        Assert.Equal(promptTokens[0], promptTokens[1]); // the simulator counted the same prompt, every byte of it
    }

    public static TheoryData<string, byte[]> UndecodableBodies() => new()
    {
        { "invalid UTF-8 in a message", Bytes("""{"model":"sim-llm","messages":[{"role":"user","content":"#"}],"max_tokens":2}""", 0xFF) },
        { "lone surrogate escape in a message", Bytes("""{"model":"sim-llm","messages":[{"role":"user","content":"\ud800x"}],"max_tokens":2}""") },
        { "lone surrogate escape in a content part", Bytes("""{"model":"sim-llm","messages":[{"role":"user","content":[{"type":"text","text":"\udc00"}]}],"max_tokens":2}""") },
        { "invalid UTF-8 in a field that is not counted, on a stream", Bytes("""{"model":"#","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"stream":true}""", 0xC3) },
        { "lone surrogate escape in a field that is not counted, on a stream", Bytes("""{"model":"sim\ud800","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"stream":true}""") },
    };

    [Theory]
    [MemberData(nameof(UndecodableBodies))]
    public async Task Text_that_cannot_be_decoded_gets_400_invalid_json_without_an_error_log(string what, byte[] body)
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { Edit = ProtectSim });
        using var client = new HttpClient { BaseAddress = h.Http, Timeout = TimeSpan.FromSeconds(30) };

        using var response = await client.PostAsync("/v1/chat/completions", Json(body));
        var text = await response.Content.ReadAsStringAsync();

        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{what}: {(int)response.StatusCode} {text}");
        Assert.Equal("invalid_json", ErrorCode(text));
        Assert.Equal("invalid_request_error", JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("type").GetString());
        Assert.DoesNotContain(h.Logs.Entries, e => e.Level >= LogLevel.Warning || (e.Exception is not null && e.Level >= LogLevel.Information));

        // Text that is merely not ASCII, raw or escaped (a surrogate pair included), is counted and served.
        using var fine = await client.PostAsync("/v1/chat/completions", Json(Bytes("""{"model":"sim-llm","messages":[{"role":"user","content":"héllo \u00e9 \ud83d\ude00 😀"}],"max_tokens":2,"stream":true}""")));
        Assert.Equal(HttpStatusCode.OK, fine.StatusCode);
        Assert.Contains("data: [DONE]", await fine.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    /// <summary>A completions request whose prompt makes the body about <paramref name="size"/> bytes (words: quick to count).</summary>
    private static byte[] Generate(int size) =>
        Encoding.UTF8.GetBytes($$"""{"prompt":"{{string.Concat(Enumerable.Repeat("lorem ipsum ", size / 12))}}","max_tokens":1}""");

    private static HttpRequestMessage Post(byte[] body, bool chunked)
    {
        var content = chunked ? new StreamContent(new UnknownLengthStream(body)) : (HttpContent)new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/generate") { Content = content };
        request.Headers.TransferEncodingChunked = chunked;
        return request;
    }

    private static ByteArrayContent Json(byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return content;
    }

    /// <summary>The UTF-8 of <paramref name="json"/> with its first <c>#</c> replaced by <paramref name="raw"/>, a byte that is not UTF-8 on its own.</summary>
    internal static byte[] Bytes(string json, byte? raw = null)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        if (raw is { } b)
        {
            bytes[Array.IndexOf(bytes, (byte)'#')] = b;
        }

        return bytes;
    }

    private static string? ErrorCode(string json) => JsonDocument.Parse(json).RootElement.GetProperty("error").GetProperty("code").GetString();

    /// <summary>
    /// A body whose length the client does not know: HttpClient sends it chunked. It comes in pieces of 8 KiB, paced from
    /// 64 to 192 KiB as a client that produces it would (so the gateway's own reads meet the inspection limit before Kestrel
    /// has read ahead to the body limit), then all at once (so the client has sent it all when the gateway answers: HttpClient
    /// reports a connection closed under a body it is still writing, not the answer).
    /// </summary>
    private sealed class UnknownLengthStream(byte[] data) : Stream
    {
        private readonly MemoryStream _inner = new(data, writable: false);

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => _inner.Read(buffer, offset, Math.Min(count, 8192));

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_inner.Position is >= 65536 and < 196608)
            {
                await Task.Delay(1, cancellationToken);
            }

            return await _inner.ReadAsync(buffer[..Math.Min(buffer.Length, 8192)], cancellationToken);
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}

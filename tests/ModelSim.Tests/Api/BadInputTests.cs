using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using ModelSim.Tests.Support;

namespace ModelSim.Tests.Api;

/// <summary>Bad client input is a 400 in OpenAI's error shape, never a 500 or a crash, and the server keeps serving.</summary>
public sealed class BadInputTests
{
    public static TheoryData<string, string, string, string> Cases => new()
    {
        // path, content type, body, expected error code
        { "/v1/generate", "application/json", "{\"prompt\": \"hi\", \"max_tokens\": 4", "invalid_json" },
        { "/v1/generate", "application/json", "", "invalid_json" },
        { "/v1/generate", "application/json", "null", "invalid_json" },
        { "/v1/generate", "application/json", "[1,2]", "invalid_json" },
        { "/v1/generate", "application/json", "{\"prompt\": \"hi\"}", "missing_max_tokens" },
        { "/v1/generate", "application/json", "{\"prompt\": \"hi\", \"max_tokens\": -3}", "invalid_max_tokens" },
        { "/v1/generate", "application/json", "{\"prompt\": \"hi\", \"max_tokens\": 0}", "invalid_max_tokens" },
        { "/v1/generate", "application/json", "{\"prompt\": \"hi\", \"max_tokens\": 100001}", "invalid_max_tokens" },
        { "/v1/generate", "application/json", "{\"prompt\": \"hi\", \"max_tokens\": 99999999999}", "invalid_json" },
        { "/v1/generate", "application/json", "{\"prompt\": \"hi\", \"max_tokens\": \"4\"}", "invalid_json" },
        { "/v1/generate", "application/json", "{\"max_tokens\": 4}", "missing_prompt" },
        { "/v1/generate", "application/json", "{\"prompt\": 42, \"max_tokens\": 4}", "invalid_json" },
        { "/v1/generate", "text/plain", "{\"prompt\": \"hi\", \"max_tokens\": 4}", "unsupported_content_type" },
        { "/v1/chat/completions", "application/json", "{\"messages\": []}", "invalid_messages" },
        { "/v1/chat/completions", "application/json", "{\"model\": \"sim-llm\"}", "invalid_messages" },
        { "/v1/chat/completions", "application/json", "{\"messages\": [null]}", "invalid_messages" },
        { "/v1/chat/completions", "application/json", "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "invalid_messages" },
        { "/v1/chat/completions", "application/json", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": -1}", "invalid_max_tokens" },
        { "/v1/chat/completions", "application/json", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_completion_tokens\": 100001}", "invalid_max_tokens" },
        { "/v1/chat/completions", "application/x-www-form-urlencoded", "messages=x", "unsupported_content_type" },
        { "/v1/completions", "application/json", "{\"max_tokens\": 3}", "missing_prompt" },
        { "/v1/completions", "application/json", "{\"prompt\": [\"a\", \"b\"], \"max_tokens\": 3}", "invalid_prompt" },
        { "/v1/completions", "application/json", "{\"prompt\": {\"a\": 1}}", "invalid_prompt" },
        { "/v1/completions", "application/json", "{\"prompt\": \"a\", \"stream\": \"yes\"}", "invalid_json" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task BadRequestIs400WithOpenAiError(string path, string contentType, string body, string code)
    {
        await using var sim = await Sims.StartAsync(("MaxTokensLimit", 100_000), ("PrefillMs", 0), ("PerTokenMs", 0.1));
        using var client = Sims.Client(sim);
        using var content = new StringContent(body, Encoding.UTF8);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);

        var response = await client.PostAsync(path, content);
        var text = await response.Content.ReadAsStringAsync();

        Assert.True((int)response.StatusCode == 400, $"{(int)response.StatusCode}: {text}");
        var error = JsonNode.Parse(text)!["error"]!;
        Assert.Equal(code, (string)error["code"]!);
        Assert.Equal("invalid_request_error", (string)error["type"]!);
        Assert.False(string.IsNullOrWhiteSpace((string)error["message"]!));

        // Still serving, and the bad request never reached the engine.
        Assert.Equal(200, (int)(await Sims.PostAsync(client, "/v1/generate", new { prompt = "ok", max_tokens = 2 })).Response.StatusCode);
        var stats = sim.Stats;
        Assert.Equal((1L, 1L), (stats.BadRequests, stats.Requests));
    }

    public static TheoryData<string, string, int> UndecodableText => new()
    {
        // path, body (# stands for the byte 0xFF, never UTF-8), the byte or -1
        { "/v1/chat/completions", """{"model":"sim-llm","messages":[{"role":"user","content":"#"}],"max_tokens":2}""", 0xFF },
        { "/v1/chat/completions", """{"model":"sim-llm","messages":[{"role":"user","content":"\ud800x"}],"max_tokens":2}""", -1 },
        { "/v1/chat/completions", """{"model":"sim-llm","messages":[{"role":"user","content":[{"type":"text","text":"\udc00"}]}],"max_tokens":2}""", -1 },
        { "/v1/chat/completions", """{"model":"sim-llm","messages":[{"role":"#","content":"hi"}],"max_tokens":2}""", 0xFF },
        { "/v1/completions", """{"model":"sim-llm","prompt":"#","max_tokens":2}""", 0xFF },
        { "/v1/completions", """{"model":"sim-llm","prompt":["\ud800"],"max_tokens":2}""", -1 },
        { "/v1/generate", """{"prompt":"\ud800","max_tokens":2}""", -1 },
    };

    [Theory]
    [MemberData(nameof(UndecodableText))]
    public async Task TextThatIsNotUnicodeIs400InvalidJson(string path, string json, int raw)
    {
        await using var sim = await Sims.StartAsync(("PrefillMs", 0), ("PerTokenMs", 0.1));
        using var client = Sims.Client(sim);
        var bytes = Encoding.UTF8.GetBytes(json);
        if (raw >= 0)
        {
            bytes[Array.IndexOf(bytes, (byte)'#')] = (byte)raw;
        }

        using var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse("application/json");
        var response = await client.PostAsync(path, content);
        var text = await response.Content.ReadAsStringAsync();

        Assert.True((int)response.StatusCode == 400, $"{(int)response.StatusCode}: {text}");
        var error = JsonNode.Parse(text)!["error"]!;
        Assert.Equal("invalid_json", (string)error["code"]!);
        Assert.Equal("invalid_request_error", (string)error["type"]!);
        Assert.Equal(200, (int)(await Sims.PostAsync(client, "/v1/generate", new { prompt = "ok", max_tokens = 2 })).Response.StatusCode);
    }

    [Fact]
    public async Task ErrorsNameTheFieldAndTheValue()
    {
        await using var sim = await Sims.StartAsync(("MaxTokensLimit", 64));
        using var client = Sims.Client(sim);
        var (_, tooMany) = await Sims.PostAsync(client, "/v1/chat/completions", new { messages = new[] { new { role = "user", content = "x" } }, max_tokens = 65 });
        Assert.Equal("max_tokens must be at most 64 (was 65).", (string)tooMany!["error"]!["message"]!);
        Assert.Equal("max_tokens", (string)tooMany["error"]!["param"]!);

        var (_, wrongType) = await Sims.PostAsync(client, "/v1/generate", new { prompt = "x", max_tokens = "lots" });
        Assert.Equal("max_tokens", (string)wrongType!["error"]!["param"]!);
    }

    [Fact]
    public async Task WrongMethodAndUnknownPathAreNotServerErrors()
    {
        await using var sim = await Sims.StartAsync();
        using var client = Sims.Client(sim);
        Assert.Equal(405, (int)(await client.GetAsync("/v1/chat/completions")).StatusCode);
        Assert.Equal(404, (int)(await client.GetAsync("/v1/nothing")).StatusCode);
        Assert.Equal(400, (int)(await client.GetAsync("/v1/stream")).StatusCode); // not a WebSocket upgrade
    }
}

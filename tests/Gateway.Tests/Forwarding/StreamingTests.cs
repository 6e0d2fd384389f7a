using System.ClientModel;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;

namespace Gateway.Tests.Forwarding;

/// <summary>OpenAI-compatible traffic through the gateway, and streams that are never buffered or compressed.</summary>
public sealed class StreamingTests
{
    [Fact]
    public async Task OpenAI_sdk_completes_chat_through_the_gateway()
    {
        await using var h = await GatewayHarness.StartAsync();
        var chat = CreateChatClient(h.Http);

        ChatCompletion completion = await chat.CompleteChatAsync(
            [new UserChatMessage("Say something.")],
            new ChatCompletionOptions { MaxOutputTokenCount = 9 });

        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.False(string.IsNullOrEmpty(completion.Content[0].Text));
        Assert.Equal(9, completion.Usage.OutputTokenCount);
        Assert.True(completion.Usage.InputTokenCount > 0);
        Assert.Equal(completion.Usage.InputTokenCount + 9, completion.Usage.TotalTokenCount);
    }

    [Fact]
    public async Task OpenAI_sdk_streams_chat_with_usage_through_the_gateway()
    {
        await using var h = await GatewayHarness.StartAsync();
        var chat = CreateChatClient(h.Http);

        var text = new StringBuilder();
        ChatTokenUsage? usage = null;
        var updates = 0;
        await foreach (var update in chat.CompleteChatStreamingAsync(
            [new UserChatMessage("Stream something.")],
            new ChatCompletionOptions { MaxOutputTokenCount = 12 }))
        {
            updates++;
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            usage ??= update.Usage;
        }

        Assert.True(updates >= 12, $"expected one update per token, got {updates}");
        Assert.False(string.IsNullOrEmpty(text.ToString()));
        Assert.NotNull(usage);
        Assert.Equal(12, usage!.OutputTokenCount);
        Assert.Equal(12, h.Sim.Stats.GeneratedTokens);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("gzip, deflate, br")]
    public async Task Sse_tokens_reach_the_client_as_they_are_produced_never_buffered_or_compressed(string? acceptEncoding)
    {
        var options = new GatewayHarness.Options();
        options.Sim["Sim:PerTokenMs"] = "40";
        await using var h = await GatewayHarness.StartAsync(options);
        using var client = new HttpClient { BaseAddress = h.Http, Timeout = TimeSpan.FromSeconds(30) };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent("""{"model":"sim","messages":[{"role":"user","content":"go"}],"max_tokens":25,"stream":true}""", Encoding.UTF8, "application/json"),
        };
        if (acceptEncoding is not null)
        {
            foreach (var e in acceptEncoding.Split(", "))
            {
                request.Headers.AcceptEncoding.Add(new StringWithQualityHeaderValue(e));
            }
        }

        // Warm the path first (connection, JIT of both processes), so that cold start is not mistaken for buffering.
        using (var warm = await client.PostAsync("/v1/chat/completions", new StringContent("""{"model":"sim","messages":[{"role":"user","content":"warm"}],"max_tokens":1,"stream":true}""", Encoding.UTF8, "application/json")))
        {
            warm.EnsureSuccessStatusCode();
            await warm.Content.ReadAsStringAsync();
        }

        var clock = Stopwatch.StartNew();
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        Assert.Empty(response.Content.Headers.ContentEncoding);

        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        TimeSpan? first = null;
        var events = 0;
        var done = false;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal))
            {
                continue;
            }

            first ??= clock.Elapsed;
            if (line == "data: [DONE]")
            {
                done = true;
                break;
            }

            using var chunk = JsonDocument.Parse(line["data: ".Length..]);
            events++;
        }

        var last = clock.Elapsed;
        Assert.True(done, "the stream must end with data: [DONE]");
        Assert.True(events >= 25, $"expected a chunk per token, got {events}");
        // 25 tokens x 40 ms = 1 s of generation. Buffering would deliver the first event with the last.
        Assert.True(last >= TimeSpan.FromMilliseconds(800), $"generation took {last}");
        Assert.True(first < last * 0.4, $"first event after {first}, last after {last}: the stream was buffered");
    }

    private static ChatClient CreateChatClient(Uri gateway) =>
        new("sim-llm", new ApiKeyCredential("test-key"), new OpenAIClientOptions { Endpoint = new Uri(gateway, "/v1") });
}

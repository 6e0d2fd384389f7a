using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Contracts.Recording;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Recording;

/// <summary>
/// Issue 11 edge: "when the client did not ask for usage on a stream, running-total usage fields the backend puts on
/// content chunks are removed too, not only usage-only chunks; a record whose token count is an estimate says so".
/// The backend here behaves as vLLM did in vllm-project/vllm#7262 (usage on every chunk); the gateway hides what the
/// client did not ask for, as volcano-sh/kthena#202 does.
/// </summary>
public sealed class RecordedTokensTests
{
    [Fact]
    public async Task Running_usage_on_content_chunks_is_hidden_from_the_client_and_the_record_says_which_counts_are_estimates()
    {
        await using var backend = await TestBackend.StartAsync(app => app.MapPost("/v1/chat/completions", async (HttpContext ctx) =>
        {
            using var doc = await JsonDocument.ParseAsync(ctx.Request.Body);
            var root = doc.RootElement;
            if (!root.GetProperty("stream").GetBoolean())
            {
                // A non-streamed answer without usage: the gateway can only keep its estimate.
                await ctx.Response.WriteAsJsonAsync(new { id = "x", choices = new[] { new { index = 0, message = new { role = "assistant", content = "ok" } } } });
                return;
            }

            ctx.Response.ContentType = "text/event-stream";
            for (var i = 1; i <= 3; i++)
            {
                // A running total on every content chunk, whatever the client asked.
                await ctx.Response.WriteAsync($"data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i}\"}}}}],\"usage\":{{\"prompt_tokens\":4,\"completion_tokens\":{i},\"total_tokens\":{4 + i}}}}}\n\n");
                await ctx.Response.Body.FlushAsync();
            }

            await ctx.Response.WriteAsync("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":3,\"total_tokens\":7}}\n\n");
            await ctx.Response.WriteAsync("data: [DONE]\n\n");
        }));
        var options = new GatewayHarness.Options
        {
            HttpBackend = backend.Address,
            Edit = With(Policies(("tpm", new JsonObject { ["Kind"] = "Tokens", ["TokensPerMinute"] = 100_000, ["Partition"] = "ApiKey" })), openaiPolicies: "tpm"),
        };
        await using var r = await RecordingHarness.StartAsync(null, options);
        var name = "tokens-" + Guid.NewGuid().ToString("N")[..6];
        await r.StartRecordingAsync(name);
        using var http = new HttpClient { BaseAddress = r.H.Http };

        using (var streamed = await http.PostAsync("/v1/chat/completions", Chat(stream: true)))
        {
            Assert.Equal(HttpStatusCode.OK, streamed.StatusCode);
            var text = await streamed.Content.ReadAsStringAsync();
            Assert.DoesNotContain("usage", text, StringComparison.Ordinal); // neither the running totals nor the usage chunk
            Assert.Equal(4, text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Length); // 3 content chunks + [DONE]
            Assert.Contains("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t3\"}}]}\n\n", text, StringComparison.Ordinal);
        }

        using (var plain = await http.PostAsync("/v1/chat/completions", Chat(stream: false)))
        {
            Assert.Equal(HttpStatusCode.OK, plain.StatusCode);
        }

        await r.WaitAccountedAsync(2, TimeSpan.FromSeconds(15));
        await r.StopRecordingAsync(name);
        var records = await r.ReadAsync(name);

        var reported = records.Single(x => x.Streamed);
        Assert.Equal(new RecordedTokens { Prompt = 4, Completion = 3, Estimated = false, Source = TokenSources.Usage }, reported.Tokens! with { Charges = null });
        // Issue 12: the charge per policy: reserved the estimate (prompt + max_tokens 50), charged the 7 reported, the rest given back.
        var charge = Assert.Single(reported.Tokens.Charges!);
        Assert.Equal("tpm", charge.Policy);
        Assert.Equal((charge.Estimated, 7L), (charge.Reserved, charge.Actual));
        Assert.InRange(charge.Reserved, 51, 70);
        Assert.Equal(charge.Reserved - 7, charge.Refunded);
        Assert.DoesNotContain(reported.Units!, u => u.Text!.Contains("usage", StringComparison.Ordinal)); // the record shows what the client got

        var estimated = records.Single(x => !x.Streamed);
        Assert.NotNull(estimated.Tokens);
        Assert.True(estimated.Tokens!.Estimated);
        Assert.Equal((TokenSources.MaxTokens, 50L), (estimated.Tokens.Source, estimated.Tokens.Completion));

        // The field is optional: a record without it (written before it existed) reads back with none.
        var json = Encoding.UTF8.GetString(RecordingSerializer.Serialize(reported with { Tokens = null }));
        Assert.DoesNotContain("\"tokens\":", json, StringComparison.Ordinal);
        Assert.Null(RecordingSerializer.DeserializeExchange(Encoding.UTF8.GetBytes(json)).Tokens);
        Assert.Contains("\"tokens\":{\"prompt\":4,\"completion\":3,\"estimated\":false,\"source\":\"usage\",\"charges\":[{\"policy\":\"tpm\",",
            Encoding.UTF8.GetString(RecordingSerializer.Serialize(reported)), StringComparison.Ordinal);
    }

    private static StringContent Chat(bool stream) => new(
        $$"""{"model":"m","messages":[{"role":"user","content":"Count to three."}],"max_tokens":50,"stream":{{(stream ? "true" : "false")}}}""",
        Encoding.UTF8, "application/json");
}

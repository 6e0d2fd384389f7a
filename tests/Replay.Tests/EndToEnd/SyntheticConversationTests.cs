using System.Collections.Concurrent;
using System.Text.Json;
using Contracts.Tokens;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Replay.Tests.EndToEnd;

/// <summary>--turns K without --generate-with: synthetic conversations whose turns resend the conversation so far.</summary>
public sealed class SyntheticConversationTests
{
    [Fact(Timeout = 90_000)]
    public async Task Each_turn_resends_the_previous_turns_prompt_and_answer_then_new_text()
    {
        // A target that keeps every request body by session and answers each with a text naming it.
        var bodies = new ConcurrentDictionary<string, ConcurrentQueue<string>>();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var target = builder.Build();
        target.MapPost("/v1/chat/completions", async (HttpContext context) =>
        {
            using var reader = new StreamReader(context.Request.Body);
            var body = await reader.ReadToEndAsync();
            var session = context.Request.Headers["x-session-id"].ToString();
            var queue = bodies.GetOrAdd(session, static _ => new ConcurrentQueue<string>());
            queue.Enqueue(body);
            var answer = $"answer {queue.Count} of {session}";
            return Results.Text(JsonSerializer.Serialize(new
            {
                id = "c",
                @object = "chat.completion",
                choices = new[] { new { index = 0, message = new { role = "assistant", content = answer }, finish_reason = "stop" } },
                usage = new { prompt_tokens = 1, completion_tokens = 3, total_tokens = 4 },
            }), "application/json");
        });
        await target.StartAsync();

        var run = await TestHost.RunAsync(["load", "--target", target.Urls.Single(), "--turns", "3", "--session-arrivals", "--rate", "4", "--duration", "1s",
            "--prompt-tokens", "12", "--prefix-groups", "2", "--prefix-tokens", "40", "--progress", "none"]);
        Assert.True(run.ExitCode == 0, run.ToString());

        Assert.Equal(4, bodies.Count);
        var firstTurns = new List<string>();
        foreach (var (session, queue) in bodies)
        {
            var turns = queue.Select(static b => Messages(b)).ToList();
            Assert.Equal(3, turns.Count);
            for (var k = 0; k < turns.Count; k++)
            {
                // Turn k: every earlier user and assistant message, then the new user message.
                Assert.Equal(2 * k + 1, turns[k].Count);
                Assert.Equal("user", turns[k][^1].Role);
                if (k > 0)
                {
                    Assert.Equal(turns[k - 1], turns[k].Take(turns[k - 1].Count));
                    Assert.Equal(("assistant", $"answer {k} of {session}"), turns[k][^2]);
                }
            }

            // The opener is the prefix (40 tokens) and its own 12; later turns 12 new tokens each, all different.
            Assert.Equal(52, TokenCounter.Default.Count(turns[0][0].Text));
            Assert.Equal(12, TokenCounter.Default.Count(turns[2][^1].Text));
            Assert.Equal(3, turns[2].Where(static m => m.Role == "user").Select(static m => m.Text).Distinct().Count());
            firstTurns.Add(turns[0][0].Text);
        }

        // Two prefix groups over four conversations.
        Assert.Equal(2, firstTurns.Select(static t => string.Join(' ', t.Split(' ').Take(41))).Distinct().Count());
    }

    [Fact]
    public async Task Turns_without_sessions_are_refused_naming_the_flag()
    {
        var result = await TestHost.RunAsync(["load", "--target", "http://127.0.0.1:9", "--turns", "3", "--rate", "1", "--duration", "1s"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--turns needs sessions", result.Error, StringComparison.Ordinal);
    }

    private static List<(string Role, string Text)> Messages(string body)
    {
        using var json = JsonDocument.Parse(body);
        return json.RootElement.GetProperty("messages").EnumerateArray()
            .Select(static m => (m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList();
    }
}

using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Replay.Clients;

namespace Replay.Tests.EndToEnd;

/// <summary>--generate-with: each session's next user turn written by a model (the simulator), cached by seed.</summary>
[Collection(RealTimeGroup.Name)]
public sealed class ConversationTests
{
    [Fact(Timeout = 90_000)]
    public async Task Generated_conversations_grow_turn_by_turn_and_repeat_exactly_for_a_seed()
    {
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();
        var target = sim.HttpAddress.ToString();

        async Task<JsonElement> RunAsync(string name, int seed, string cache, int turns = 3)
        {
            var result = await TestHost.RunAsync(["load", "--target", target, "--generate-with", target, "--turns", turns.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--session-arrivals", "--rate", "5", "--duration", "1s", "--seed", seed.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--generate-cache", dir.Combine(cache), "--max-tokens", "12", "--progress", "none", "--report", dir.Combine(name)]);
            Assert.True(result.ExitCode == 0, result.ToString());
            using var report = TestHost.ReadReport(dir.Combine(name));
            Assert.Equal(5 * turns, report.RootElement.GetProperty("requests").GetInt64());
            return report.RootElement.GetProperty("conversations").Clone();
        }

        var openersOnly = sim.Stats.PromptTokens;
        await RunAsync("one-turn", 7, "cache-one", turns: 1);
        openersOnly = sim.Stats.PromptTokens - openersOnly;
        var before = sim.Stats.PromptTokens;
        var first = await RunAsync("first", 7, "cache");
        var conversationTokens = sim.Stats.PromptTokens - before;
        var cached = await RunAsync("cached", 7, "cache");
        var fresh = await RunAsync("fresh", 7, "cache-fresh");
        var other = await RunAsync("other", 8, "cache");

        // The first run wrote 2 turns for each of the 5 conversations; the second took all of them from the cache.
        Assert.Equal(10, first.GetProperty("generated").GetInt64());
        Assert.Equal(0, first.GetProperty("cache_hits").GetInt64());
        Assert.Equal(0, cached.GetProperty("generated").GetInt64());
        Assert.Equal(10, cached.GetProperty("cache_hits").GetInt64());
        var digest = first.GetProperty("digest").GetString();
        Assert.Equal(digest, cached.GetProperty("digest").GetString());
        Assert.Equal(digest, fresh.GetProperty("digest").GetString()); // the simulator answers deterministically: same turns without a cache
        Assert.NotEqual(digest, other.GetProperty("digest").GetString());

        // Turns evolve: an opener, then two turns the model wrote, each different; and each request carries the
        // conversation so far, so its prompt grows (3 turns cost far more than 3 times the openers alone).
        var sample = first.GetProperty("sample").EnumerateArray().Select(static t => t.GetString()!).ToList();
        Assert.Equal(3, sample.Count);
        Assert.Contains(sample[0], ConversationGenerator.Openers);
        Assert.Equal(3, sample.Distinct().Count());
        Assert.DoesNotContain(sample[1], ConversationGenerator.Openers);
        Assert.True(conversationTokens > 5 * openersOnly, $"{conversationTokens} prompt tokens for 3-turn conversations, {openersOnly} for openers alone");
        Assert.Equal(10, File.ReadAllLines(first.GetProperty("cache_file").GetString()!).Length);
    }

    [Fact(Timeout = 90_000)]
    public async Task A_cached_turn_is_used_only_when_the_target_answered_the_same_so_far()
    {
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();
        var target = sim.HttpAddress.ToString();

        async Task<JsonElement> RunAsync(string name, int maxTokens)
        {
            var result = await TestHost.RunAsync(["load", "--target", target, "--generate-with", target, "--turns", "3",
                "--session-arrivals", "--rate", "5", "--duration", "1s", "--seed", "7", "--generate-cache", dir.Combine("cache"),
                "--max-tokens", maxTokens.ToString(System.Globalization.CultureInfo.InvariantCulture), "--progress", "none", "--report", dir.Combine(name)]);
            Assert.True(result.ExitCode == 0, result.ToString());
            using var report = TestHost.ReadReport(dir.Combine(name));
            return report.RootElement.GetProperty("conversations").Clone();
        }

        var first = await RunAsync("first", 12);

        // The target now answers differently (shorter answers): the cached turns answered answers it did not give, so
        // none is used and every turn is written anew from this run's conversation.
        var other = await RunAsync("other-answers", 5);
        Assert.Equal(0, other.GetProperty("cache_hits").GetInt64());
        Assert.Equal(10, other.GetProperty("generated").GetInt64());

        // Answers as in the first run: every turn comes from the cache.
        var again = await RunAsync("again", 12);
        Assert.Equal(10, again.GetProperty("cache_hits").GetInt64());
        Assert.Equal(0, again.GetProperty("generated").GetInt64());
        Assert.Equal(first.GetProperty("digest").GetString(), again.GetProperty("digest").GetString());
    }

    [Fact(Timeout = 90_000)]
    public async Task A_failing_generator_fails_its_conversations_visibly_and_the_run_under_assert()
    {
        await using var sim = await TestHost.StartSimAsync();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var broken = builder.Build();
        broken.MapPost("/v1/chat/completions", static () => Results.Problem("model overloaded", statusCode: 500));
        await broken.StartAsync();
        using var dir = TestHost.CreateTempDirectory();

        var run = await TestHost.RunAsync(["load", "--target", sim.HttpAddress.ToString(), "--generate-with", broken.Urls.Single(), "--turns", "3",
            "--session-arrivals", "--rate", "5", "--duration", "1s", "--generate-cache", dir.Combine("cache"), "--max-tokens", "4",
            "--assert", "error_rate<1%", "--progress", "none", "--report", dir.Combine("out")]);

        Assert.True(run.ExitCode == 1, run.ToString());
        using var report = TestHost.ReadReport(dir.Combine("out"));
        var r = report.RootElement;
        Assert.Equal(15, r.GetProperty("requests").GetInt64()); // 5 conversations of 3 turns: the openers sent, 10 turns never written
        Assert.Equal(10, r.GetProperty("failures").GetInt64());
        Assert.Equal(10, r.GetProperty("failures_by_kind").GetProperty("generator").GetInt64());
        Assert.Equal(5, sim.Stats.Requests);
        var conversations = r.GetProperty("conversations");
        Assert.Equal(5, conversations.GetProperty("failures").GetInt64());
        Assert.Contains("500", conversations.GetProperty("first_failure").GetString(), StringComparison.Ordinal);
        Assert.Contains("generator failed: --generate-with", run.Output, StringComparison.Ordinal);
        Assert.Contains("generator 10", run.Output, StringComparison.Ordinal);
    }
}

using System.Text.Json;
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
}

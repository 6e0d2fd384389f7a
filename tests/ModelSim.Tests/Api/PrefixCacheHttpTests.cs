using System.Globalization;
using Contracts.Tokens;
using ModelSim.Tests.Support;

namespace ModelSim.Tests.Api;

/// <summary>The prefix cache through the real API: a conversation's later turns reuse the earlier turns' blocks.</summary>
public sealed class PrefixCacheHttpTests
{
    private const double PrefillMs = 5;
    private const double PrefillPerTokenMs = 2;
    private const double PerTokenMs = 1;

    [Fact]
    public async Task ALaterTurnOfAChatReusesTheEarlierTurnsBlocksAndItsFirstTokenComesSooner()
    {
        await using var sim = await Sims.StartAsync(("PrefillMs", PrefillMs), ("PrefillPerTokenMs", PrefillPerTokenMs), ("PerTokenMs", PerTokenMs));
        using var client = Sims.Client(sim);
        var system = "You are a helpful assistant." + TokenCounter.BuildPrompt(200);
        var question = "What is the capital of France?";
        var (_, first) = await Sims.PostAsync(client, "/v1/chat/completions", new
        {
            model = "sim-llm",
            messages = new[] { new { role = "system", content = system }, new { role = "user", content = question } },
            max_tokens = 4,
        });
        var answer = (string)first!["choices"]![0]!["message"]!["content"]!;
        var t1 = (int)first["usage"]!["prompt_tokens"]!;
        Assert.Equal(TokenCounter.Default.Count(system) + TokenCounter.Default.Count(question), t1); // counts unchanged by the cache

        var (_, second) = await Sims.PostAsync(client, "/v1/chat/completions", new
        {
            model = "sim-llm",
            messages = new[]
            {
                new { role = "system", content = system },
                new { role = "user", content = question },
                new { role = "assistant", content = answer },
                new { role = "user", content = "And of Italy?" },
            },
            max_tokens = 4,
        });
        var t2 = (int)second!["usage"]!["prompt_tokens"]!;

        // Every full block of turn 1 is a hit for turn 2 (hits are counted in tokens, as vLLM v1 does).
        var hits = t1 / 16 * 16;
        var metrics = await Sims.ScrapeAsync(client);
        const string Labels = "{engine=\"0\",model_name=\"sim-llm\"}";
        Assert.Equal(t1 + t2, metrics["vllm:prefix_cache_queries_total" + Labels]);
        Assert.Equal(hits, metrics["vllm:prefix_cache_hits_total" + Labels]);
        Assert.Equal(hits, sim.Stats.PrefixCacheHits);

        // TTFT is engine time, exact: prefill of the uncached tokens plus one step, so turn 2 saves hits × PrefillPerTokenMs.
        var ttft1 = (PrefillMs + (t1 * PrefillPerTokenMs) + PerTokenMs) / 1000;
        var ttft2 = (PrefillMs + ((t2 - hits) * PrefillPerTokenMs) + PerTokenMs) / 1000;
        Assert.Equal(2, metrics["vllm:time_to_first_token_seconds_count" + Labels]);
        Assert.Equal(ttft1 + ttft2, metrics["vllm:time_to_first_token_seconds_sum" + Labels], 6);
        Assert.True(ttft2 < ttft1 - 0.3, string.Create(CultureInfo.InvariantCulture, $"turn 2 TTFT {ttft2} s, turn 1 {ttft1} s"));
    }

    [Fact]
    public async Task TheSamePromptOverAnotherRoleOrProtocolOnlySharesWhatATemplateWould()
    {
        await using var sim = await Sims.StartAsync(("PrefillMs", 1), ("PerTokenMs", 1));
        using var client = Sims.Client(sim);
        var text = TokenCounter.BuildPrompt(64);
        await Sims.GenerateAsync(client, text, 1);
        Assert.Equal(0, sim.Stats.PrefixCacheHits);

        // /v1/completions with the same text is the same prompt: 63 / 16 = 3 blocks hit.
        await Sims.PostAsync(client, "/v1/completions", new { model = "sim-llm", prompt = text, max_tokens = 1 });
        Assert.Equal(48, sim.Stats.PrefixCacheHits);

        // As a chat message it sits under a role (the template), so nothing is shared with the plain prompt.
        await Sims.PostAsync(client, "/v1/chat/completions", new { messages = new[] { new { role = "user", content = text } }, max_tokens = 1 });
        Assert.Equal(48, sim.Stats.PrefixCacheHits);
        await Sims.PostAsync(client, "/v1/chat/completions", new { messages = new[] { new { role = "system", content = text } }, max_tokens = 1 });
        Assert.Equal(48, sim.Stats.PrefixCacheHits);
        await Sims.PostAsync(client, "/v1/chat/completions", new { messages = new[] { new { role = "user", content = text } }, max_tokens = 1 });
        Assert.Equal(96, sim.Stats.PrefixCacheHits);
    }

    [Fact]
    public void TokenIdsHashedAreExactlyTheTokensCounted()
    {
        // Plain prose, a long run (sliced), and non-ASCII text: Encode must cut as Count does.
        string[] texts = ["The quick brown fox jumps over the lazy dog. " + TokenCounter.BuildPrompt(50), new string('x', 5000) + " tail", "héllo 😀 世界 " + new string('-', 700)];
        foreach (var text in texts)
        {
            var ids = new List<int>();
            Assert.Equal(TokenCounter.Default.Count(text), TokenCounter.Default.Encode(text, ids));
            Assert.Equal(ids.Count, TokenCounter.Default.Count(text));
        }
    }

    [Fact]
    public async Task DisabledKeepsTheOldTimingAndCountsNothing()
    {
        await using var sim = await Sims.StartAsync(("PrefixCache:Enabled", false), ("PrefillMs", PrefillMs), ("PrefillPerTokenMs", PrefillPerTokenMs), ("PerTokenMs", PerTokenMs));
        using var client = Sims.Client(sim);
        var prompt = TokenCounter.BuildPrompt(100);
        await Sims.GenerateAsync(client, prompt, 1);
        await Sims.GenerateAsync(client, prompt, 1);
        var metrics = await Sims.ScrapeAsync(client);
        const string Labels = "{engine=\"0\",model_name=\"sim-llm\"}";
        Assert.Equal(0, metrics["vllm:prefix_cache_hits_total" + Labels]);
        Assert.Equal(0, metrics["vllm:kv_cache_usage_perc" + Labels]);
        Assert.Equal(2 * (PrefillMs + (100 * PrefillPerTokenMs) + PerTokenMs) / 1000, metrics["vllm:time_to_first_token_seconds_sum" + Labels], 6);
    }
}

using Contracts.Tokens;
using Replay.Clients;
using Replay.Sources;

namespace Replay.Tests.Sources;

/// <summary>Synthetic prompt text: shared prefixes (--prefix-groups, --prefix-tokens) and an own part distinct per request.</summary>
public sealed class PromptTextTests
{
    [Fact]
    public void Every_word_is_one_cl100k_token_with_its_space()
    {
        var words = PromptText.Words.ToList();
        Assert.Equal(128, words.Count); // the request number is written one word per 7 bits
        Assert.Equal(128, words.Distinct().Count());
        foreach (var word in words)
        {
            Assert.Equal(1, TokenCounter.Default.Count(word));
        }
    }

    [Fact]
    public void Prompts_share_their_groups_prefix_round_robin_and_nothing_more()
    {
        var text = PromptText.Create(groups: 2, prefixTokens: 200, seed: 1, salt: 42);
        var prompts = Enumerable.Range(0, 6).Select(i => text.ToText(i, ownTokens: 16)).ToList();
        foreach (var p in prompts)
        {
            Assert.Equal(216, TokenCounter.Default.Count(p));
        }

        // Requests 0, 2, 4 are group 0; 1, 3, 5 group 1: the same 200 tokens within a group, different across groups.
        var g0 = Ids(prompts[0]).Take(200).ToList();
        Assert.Equal(g0, Ids(prompts[2]).Take(200));
        Assert.Equal(g0, Ids(prompts[4]).Take(200));
        Assert.NotEqual(g0, Ids(prompts[1]).Take(200));
        Assert.Equal(Ids(prompts[1]).Take(200), Ids(prompts[3]).Take(200));

        // The own parts differ from their first token.
        var own = prompts.Select(p => Ids(p)[200]).ToList();
        Assert.Equal(own.Count, own.Distinct().Count());

        // A prefix is fixed by the seed (the same in the next run), the own part by the run's salt.
        var again = PromptText.Create(groups: 2, prefixTokens: 200, seed: 1, salt: 7).ToText(0, ownTokens: 16);
        Assert.Equal(g0, Ids(again).Take(200));
        Assert.NotEqual(prompts[0], again);
        Assert.NotEqual(g0, Ids(PromptText.Create(2, 200, seed: 2, salt: 42).ToText(0, 16)).Take(200));
    }

    [Fact]
    public void Without_groups_every_prompt_is_its_own_and_the_body_counts_exactly()
    {
        var text = PromptText.Create(groups: 0, prefixTokens: 0, seed: 1, salt: 1);
        var prompt = new SyntheticPrompt(33, 5, "sim-llm", Stream: false) { Text = text };
        var contents = Enumerable.Range(0, 300).Select(_ =>
        {
            using var json = System.Text.Json.JsonDocument.Parse(PromptBody.ToText(prompt));
            return json.RootElement.GetProperty("messages")[0].GetProperty("content").GetString()!;
        }).ToList();
        Assert.All(contents, c => Assert.Equal(33, TokenCounter.Default.Count(c)));
        Assert.Equal(300, contents.Select(c => string.Join(' ', c.Split(' ').Take(5))).Distinct().Count()); // distinct in the first 4 tokens
    }

    private static List<int> Ids(string text)
    {
        var ids = new List<int>();
        TokenCounter.Default.Encode(text, ids);
        return ids;
    }
}

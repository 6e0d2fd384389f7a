namespace Replay.Tests.EndToEnd;

/// <summary>--prefix-groups/--prefix-tokens against a real simulator with its prefix (KV) cache.</summary>
public sealed class PrefixWorkloadTests
{
    [Fact(Timeout = 90_000)]
    public async Task Shared_prefixes_hit_the_simulators_prefix_cache_and_plain_synthetic_prompts_do_not()
    {
        await using var sim = await TestHost.StartSimAsync();
        var target = sim.HttpAddress.ToString();

        async Task<(long Queries, long Hits)> RunAsync(params string[] extra)
        {
            var (queries, hits) = (sim.Stats.PrefixCacheQueries, sim.Stats.PrefixCacheHits);
            var result = await TestHost.RunAsync(["load", "--target", target, "--rate", "20", "--duration", "1s", "--max-tokens", "4", "--progress", "none", .. extra]);
            Assert.True(result.ExitCode == 0, result.ToString());
            return (sim.Stats.PrefixCacheQueries - queries, sim.Stats.PrefixCacheHits - hits);
        }

        // Without groups first, on an empty cache: prompts as long as the shared ones below, each its own (the
        // `hello hello …` sent before would hit 13 blocks of 14 from the second request on).
        var plain = await RunAsync("--prompt-tokens", "216");
        Assert.Equal(20 * 216, plain.Queries);
        Assert.Equal(0, plain.Hits);

        // 2 groups × 200 tokens, 20 requests: after the first request of each group, the other 18 find the 12 full
        // 16-token blocks of their prefix (192 tokens; the 13th block mixes prefix and own tokens).
        var shared = await RunAsync("--prefix-groups", "2", "--prefix-tokens", "200", "--prompt-tokens", "16");
        Assert.Equal(20 * 216, shared.Queries);
        Assert.True(shared.Hits >= 18 * 192, $"{shared.Hits} of {shared.Queries} prompt tokens hit with 2 shared prefixes");
        Assert.True(shared.Hits <= 20 * 192, $"{shared.Hits}: no more than the prefixes' full blocks can hit");
    }

    [Theory]
    [InlineData("--prefix-groups 0 --prefix-tokens 10", "--prefix-groups must be between 1 and 100000 (was 0)")]
    [InlineData("--prefix-groups 2 --prefix-tokens 0", "--prefix-tokens must be between 1 and 1000000 (was 0)")]
    [InlineData("--prefix-groups 2", "--prefix-groups needs --prefix-tokens")]
    [InlineData("--prefix-tokens 2", "--prefix-tokens needs --prefix-groups")]
    [InlineData("--prefix-groups 2 --prefix-tokens 8 --protocol grpc", "--prefix-groups applies to --protocol http")]
    public async Task Bad_prefix_flags_are_refused_naming_the_flag(string args, string expected)
    {
        var result = await TestHost.RunAsync(["load", "--target", "http://127.0.0.1:9", "--rate", "1", "--duration", "1s", .. args.Split(' ')]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains(expected, result.Error, StringComparison.Ordinal);
    }
}

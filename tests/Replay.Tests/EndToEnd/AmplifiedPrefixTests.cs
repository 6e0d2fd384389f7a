using Contracts.Recording;
using Contracts.Tokens;

namespace Replay.Tests.EndToEnd;

/// <summary>Amplified clones against the simulator's prefix cache: they share the recording's common prefix, not their original's whole prompt.</summary>
public sealed class AmplifiedPrefixTests
{
    [Fact(Timeout = 90_000)]
    public async Task Clones_hit_the_shared_prefix_like_their_originals_and_fresh_clones_hit_nothing()
    {
        using var dir = TestHost.CreateTempDirectory();

        // 6 sessions of one chat request each: a common 400-token text, then a question of their own.
        await using (var store = new FileRecordingStore(dir.Combine("store")))
        {
            await store.StartAsync("shared", CancellationToken.None);
            var exchanges = Enumerable.Range(0, 6)
                .Select(s => Recordings.Http("shared", $"s{s}", 1, Recordings.Origin + (s * 200_000L), streamed: false,
                    TokenCounter.BuildPrompt(400) + $" question {s} about rivers and mountains and the sea and the sky and the stars tonight", maxTokens: 2))
                .ToList();
            await store.AppendAsync("shared", exchanges, Recordings.Sessions(exchanges), CancellationToken.None);
            await store.StopAsync("shared", CancellationToken.None);
        }

        async Task<long> HitsAsync(params string[] extra)
        {
            await using var sim = await TestHost.StartSimAsync();
            var result = await TestHost.RunAsync(["run", "--source", "file:" + dir.Combine("store"), "--recording", "shared", "--amplify", "3", "--speed", "4",
                "--progress", "none", "--target", sim.HttpAddress.ToString(), .. extra]);
            Assert.True(result.ExitCode == 0, result.ToString());
            Assert.Equal(18, sim.Stats.Requests);
            return sim.Stats.PrefixCacheHits;
        }

        var fresh = await HitsAsync("--amplify-fresh-prompts");
        var kept = await HitsAsync();

        // Fresh: only the 6 originals share the common text, so 5 of them hit it (h tokens each) and no clone hits.
        // Kept: all 18 requests share it, so 17 hit the same h each; none hits more (an exact copy would hit its
        // original's question too).
        Assert.True(fresh > 0 && fresh % 5 == 0, $"fresh clones: {fresh} hit tokens");
        var h = fresh / 5;
        Assert.InRange(h, 384, 400);
        Assert.Equal(17 * h, kept);
    }
}

using ModelSim.Engine;

namespace ModelSim.Tests.Engine;

/// <summary>The KV cache with prefix caching, on a fake clock: hits, prefill saved, LRU eviction, pinning, KV-bounded admission.</summary>
public sealed class PrefixCacheTests
{
    private const double Exact = 1e-6;

    private static SimOptions Options(int blockTokens = 16, int blocks = 1000, int slots = 4, bool enabled = true) => new()
    {
        Slots = slots,
        PrefillMs = 10,
        PrefillPerTokenMs = 1,
        PerTokenMs = 2,
        BatchSlowdown = 0,
        PrefixCache = new SimPrefixCacheOptions { Enabled = enabled, BlockTokens = blockTokens, Blocks = blocks },
    };

    [Fact]
    public void ASecondRequestWithTheSamePrefixSkipsTheCachedPrefill()
    {
        using var h = new EngineHarness(Options());
        var first = h.AdmitIds(EngineHarness.Ids(0, 100), 5); // 6 full blocks: ids 0 … 95
        h.RunUntilDone([first]);
        Assert.Equal(0, first.CachedTokens);
        Assert.Equal(10 + 100, first.PrefillEndMs - first.AdmittedAtMs, Exact);

        // 96 shared tokens (6 blocks), then 20 of its own: prefill 10 + (116 − 96) × 1 = 30 ms instead of 126.
        var second = h.AdmitIds([.. EngineHarness.Ids(0, 96), .. EngineHarness.Ids(1000, 20)], 5);
        h.RunUntilDone([second]);
        Assert.Equal(96, second.CachedTokens);
        Assert.Equal(30, second.PrefillEndMs - second.AdmittedAtMs, Exact);
        Assert.Equal(30 + (5 * 2), second.FinishedAtMs - second.AdmittedAtMs, Exact);

        var stats = h.Engine.GetStats();
        Assert.Equal((100L + 116, 96L), (stats.PrefixCacheQueries, stats.PrefixCacheHits));
        Assert.Equal(0, stats.KvBlocksUsed);
        Assert.Equal(6 + 1, stats.KvBlocksCached); // the second request's seventh block (ids 1000 … 1003 after 0 … 95) is new
    }

    [Fact]
    public void AFullyCachedPromptStillComputesTheBlockOfItsLastToken()
    {
        // As vLLM: at most floor((P − 1) / BlockTokens) blocks hit, so 96 cached tokens give 80 hits, not 96.
        using var h = new EngineHarness(Options());
        var first = h.AdmitIds(EngineHarness.Ids(0, 96), 1);
        h.RunUntilDone([first]);
        var again = h.AdmitIds(EngineHarness.Ids(0, 96), 1);
        h.RunUntilDone([again]);
        Assert.Equal(80, again.CachedTokens);
        Assert.Equal(10 + 16, again.PrefillEndMs - again.AdmittedAtMs, Exact);
    }

    [Fact]
    public void DisabledGivesTheOldTimingExactly()
    {
        var options = Options(enabled: false);
        using var h = new EngineHarness(options);
        Assert.Null(h.Engine.Cache);
        var first = h.AdmitIds(EngineHarness.Ids(0, 100), 5);
        h.RunUntilDone([first]);
        var second = h.AdmitIds([.. EngineHarness.Ids(0, 96), .. EngineHarness.Ids(1000, 20)], 5);
        h.RunUntilDone([second]);

        Assert.Equal(0, second.CachedTokens);
        Assert.Equal(LatencyModel.UnloadedLatencyMs(options, 116, 5), second.FinishedAtMs - second.AdmittedAtMs, Exact);
        var stats = h.Engine.GetStats();
        Assert.Equal((0L, 0L, 0), (stats.PrefixCacheQueries, stats.PrefixCacheHits, stats.KvBlocks));
    }

    [Fact]
    public void APrefixStillInAnotherSequencesPrefillIsUsedWhenThatPrefillEnds()
    {
        using var h = new EngineHarness(Options());
        var first = h.AdmitIds(EngineHarness.Ids(0, 64), 2); // prefill 10 + 64 = 74 ms
        h.AdvanceTo(5);
        var second = h.AdmitIds([.. EngineHarness.Ids(0, 64), .. EngineHarness.Ids(500, 16)], 2);

        // Its own prefill would end at 5 + 10 + 16 = 31 ms, but the 64 cached tokens are computed only at 74 ms.
        Assert.Equal(64, second.CachedTokens);
        Assert.Equal(74, first.PrefillEndMs, Exact);
        Assert.Equal(74, second.PrefillEndMs, Exact);
        h.RunUntilDone([first, second]);
    }

    [Fact]
    public void EvictionTakesTheLeastRecentlyUsedIdleBlocks()
    {
        // 10 blocks of 4 tokens; a 12-token prompt with 1 output token holds 3 cached blocks and 1 private one.
        using var h = new EngineHarness(Options(blockTokens: 4, blocks: 10, slots: 1));
        var cache = h.Engine.Cache!;
        int[] a = EngineHarness.Ids(0, 12), b = EngineHarness.Ids(100, 12), c = EngineHarness.Ids(200, 12), d = EngineHarness.Ids(300, 12);
        foreach (var prompt in new[] { a, b, c, a })
        {
            h.RunUntilDone([h.AdmitIds(prompt, 1)]); // a is used again last: b is now the least recently used
        }

        Assert.Equal((9, 9, 0), (cache.CachedBlocks, cache.IdleBlocks, cache.UsedBlocks));

        // d needs 4 blocks; 1 was never used, so 3 idle ones go: b's, all of them, and nothing of a's or c's.
        var running = h.AdmitIds(d, 1);
        Assert.All(EngineHarness.Hashes(b, 4), hash => Assert.False(cache.Contains(hash)));
        Assert.All(EngineHarness.Hashes(a, 4), hash => Assert.True(cache.Contains(hash)));
        Assert.All(EngineHarness.Hashes(c, 4), hash => Assert.True(cache.Contains(hash)));
        h.RunUntilDone([running]);

        var cAgain = h.AdmitIds(c, 1);
        h.RunUntilDone([cAgain]);
        Assert.Equal(8, cAgain.CachedTokens);
        var bAgain = h.AdmitIds(b, 1);
        h.RunUntilDone([bAgain]);
        Assert.Equal(0, bAgain.CachedTokens);
    }

    [Fact]
    public void PinnedBlocksAreNeverEvictedAndAFullCacheMakesRequestsWaitUntilBlocksFree()
    {
        using var h = new EngineHarness(Options(blockTokens: 4, blocks: 10, slots: 4));
        var cache = h.Engine.Cache!;
        int[] a = EngineHarness.Ids(0, 12), b = EngineHarness.Ids(100, 4), c = EngineHarness.Ids(200, 12), e = EngineHarness.Ids(400, 4);
        h.RunUntilDone([h.AdmitIds(c, 1)]); // leaves 3 idle cached blocks

        var longRunning = h.AdmitIds(a, 20);  // ceil(32 / 4) = 8 blocks: 7 never used + 1 of c's evicted
        var small = h.AdmitIds(b, 4);         // 2 blocks: c's last 2 go; a's 3 pinned blocks must stay
        Assert.All(EngineHarness.Hashes(a, 4), hash => Assert.True(cache.Contains(hash)));
        Assert.All(EngineHarness.Hashes(c, 4), hash => Assert.False(cache.Contains(hash)));
        var stats = h.Engine.GetStats();
        Assert.Equal((10, 10, 2), (stats.KvBlocksUsed, stats.KvBlocks, stats.Inflight));

        // Two slots are free but no block is: the next request waits in the queue, as vLLM's scheduler makes it.
        var waiting = h.Engine.TryAdmit(new GenerationRequest(e.Length, 1, 1, EngineHarness.Hashes(e, 4)), false, out var queued);
        Assert.Equal(AdmissionResult.Accepted, waiting);
        Assert.Equal(1, h.Engine.GetStats().QueueDepth);
        Assert.True(double.IsNaN(queued!.AdmittedAtMs));

        // It starts the moment the small request frees its 2 blocks (on the engine's schedule, not when the loop noticed).
        h.RunUntilDone([small]);
        h.AdvanceTo(h.NowMs + 1);
        Assert.Equal(small.FinishedAtMs, queued.AdmittedAtMs, Exact);
        Assert.Equal(SequenceState.Running, longRunning.State);
        h.RunUntilDone([longRunning, queued]);
        Assert.Equal(0, h.Engine.GetStats().KvBlocksUsed);
    }

    [Fact]
    public void ARequestLargerThanTheWholeCacheRunsAloneAndCachesNothing()
    {
        using var h = new EngineHarness(Options(blockTokens: 4, blocks: 4, slots: 4));
        var small = h.AdmitIds(EngineHarness.Ids(0, 4), 1);
        var huge = h.AdmitIds(EngineHarness.Ids(100, 20), 1); // needs 6 blocks of 4: waits for an empty cache
        var after = h.AdmitIds(EngineHarness.Ids(200, 4), 1);  // FIFO: behind the huge one
        Assert.True(double.IsNaN(huge.AdmittedAtMs));

        h.RunUntilDone([small, huge, after]);
        Assert.Equal(small.FinishedAtMs, huge.AdmittedAtMs, Exact);
        Assert.Equal(huge.FinishedAtMs, after.AdmittedAtMs, Exact);
        Assert.All(EngineHarness.Hashes(EngineHarness.Ids(100, 20), 4), hash => Assert.False(h.Engine.Cache!.Contains(hash)));
    }

    [Fact]
    public void ACollapseEmptiesTheCache()
    {
        using var h = new EngineHarness(Options());
        h.RunUntilDone([h.AdmitIds(EngineHarness.Ids(0, 64), 1)]);
        Assert.Equal(4, h.Engine.Cache!.CachedBlocks);
        h.Engine.Collapse(TimeSpan.FromMilliseconds(10));
        Assert.Equal(0, h.Engine.Cache.CachedBlocks);
    }

    [Fact]
    public void BlockHashesChainSoOnlyAWholeEqualPrefixMatches()
    {
        var x = EngineHarness.Hashes([.. EngineHarness.Ids(0, 16), .. EngineHarness.Ids(16, 16)], 16);
        var y = EngineHarness.Hashes([.. EngineHarness.Ids(1, 16), .. EngineHarness.Ids(16, 16)], 16);
        Assert.Equal(2, x.Length);
        Assert.NotEqual(x[0], y[0]);
        Assert.NotEqual(x[1], y[1]); // same tokens in block 2, different parent
        Assert.Empty(EngineHarness.Hashes(EngineHarness.Ids(0, 15), 16)); // a partial block is never hashed

        var user = new PrefixHasher(2);
        var system = new PrefixHasher(2);
        user.Add(7, PrefixHasher.ChatTag("user", 0));
        user.Add(8, PrefixHasher.ChatTag("user", 0));
        system.Add(7, PrefixHasher.ChatTag("system", 0));
        system.Add(8, PrefixHasher.ChatTag("system", 0));
        Assert.NotEqual(user.ToArray()[0], system.ToArray()[0]);
    }
}

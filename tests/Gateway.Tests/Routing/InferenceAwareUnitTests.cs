using System.Text;
using Gateway.Routing.InferenceAware;
using Microsoft.Extensions.Time.Testing;
using Yarp.ReverseProxy.Model;

namespace Gateway.Tests.Routing;

/// <summary>The InferenceAware policy's parts with fixed inputs: the scorer, the Prometheus text parser, the prompt text and its block hashes, the prefix table.</summary>
public sealed class InferenceAwareUnitTests
{
    private static readonly InferenceAwareSettings s_defaults = InferenceAwareSettings.Default;

    [Fact]
    public void Scorer_prefers_the_destination_holding_the_prefix_over_an_idler_one()
    {
        ReadOnlySpan<ReplicaInput> candidates =
        [
            new(Load: 0, KvUsage: 0, MatchedBlocks: 0, TieBreak: 9),
            new(Load: 2, KvUsage: 0.3, MatchedBlocks: 8, TieBreak: 1),
            new(Load: 1, KvUsage: 0, MatchedBlocks: 0, TieBreak: 5),
        ];
        var (index, reason) = ReplicaScorer.Pick(candidates, promptBlocks: 10, s_defaults);
        Assert.Equal(1, index);
        Assert.Equal(PickReason.PrefixHit, reason);
    }

    [Fact]
    public void Scorer_passes_over_the_prefix_holder_above_the_load_bound()
    {
        // Bound = LoadFactor (2) × (least load 1 + 1) = 4: the holder at 5 is passed over, for the least loaded.
        ReadOnlySpan<ReplicaInput> candidates =
        [
            new(Load: 5, KvUsage: 0, MatchedBlocks: 10, TieBreak: 1),
            new(Load: 1, KvUsage: 0, MatchedBlocks: 0, TieBreak: 2),
            new(Load: 3, KvUsage: 0, MatchedBlocks: 0, TieBreak: 3),
        ];
        var (index, reason) = ReplicaScorer.Pick(candidates, promptBlocks: 10, s_defaults);
        Assert.Equal(1, index);
        Assert.Equal(PickReason.Load, reason);

        // At the bound it still takes it.
        ReadOnlySpan<ReplicaInput> atBound = [candidates[0] with { Load = 4 }, candidates[1], candidates[2]];
        Assert.Equal((0, PickReason.PrefixHit), ReplicaScorer.Pick(atBound, 10, s_defaults));

        // A larger load factor lets the prefix pile on further.
        Assert.Equal((0, PickReason.PrefixHit), ReplicaScorer.Pick(candidates, 10, s_defaults with { LoadFactor = 3 }));
    }

    [Fact]
    public void Scorer_without_a_prefix_match_takes_the_least_queue_and_kv_and_breaks_ties_by_rendezvous_weight()
    {
        ReadOnlySpan<ReplicaInput> candidates =
        [
            new(Load: 3, KvUsage: 0, MatchedBlocks: 0, TieBreak: 1),
            new(Load: 1, KvUsage: 0.9, MatchedBlocks: 0, TieBreak: 2),
            new(Load: 1, KvUsage: 0.1, MatchedBlocks: 0, TieBreak: 3),
        ];
        Assert.Equal((2, PickReason.Fallback), ReplicaScorer.Pick(candidates, 4, s_defaults));

        ReadOnlySpan<ReplicaInput> idle = [new(0, 0, 0, 7), new(0, 0, 0, 42), new(0, 0, 0, 13)];
        Assert.Equal((1, PickReason.Fallback), ReplicaScorer.Pick(idle, 4, s_defaults));
        Assert.Equal((1, PickReason.Fallback), ReplicaScorer.Pick(idle, 0, s_defaults));
    }

    [Fact]
    public void Scorer_weights_change_the_choice()
    {
        // Half the prefix on a busy destination, against an idle one: prefix weight 2 wins, 0.5 loses.
        ReadOnlySpan<ReplicaInput> candidates = [new(Load: 3, KvUsage: 0, MatchedBlocks: 5, TieBreak: 1), new(Load: 2, KvUsage: 0, MatchedBlocks: 0, TieBreak: 2)];
        Assert.Equal(0, ReplicaScorer.Pick(candidates, 10, s_defaults).Index);
        Assert.Equal(1, ReplicaScorer.Pick(candidates, 10, s_defaults with { PrefixWeight = 0.1 }).Index);
    }

    [Fact]
    public void Parser_reads_the_vllm_series_with_labels_sums_engines_and_ignores_the_rest()
    {
        var text = """
            # HELP vllm:num_requests_running Number of requests in model execution batches.
            # TYPE vllm:num_requests_running gauge
            vllm:num_requests_running{engine="0",model_name="sim-llm"} 3.0
            vllm:num_requests_running{engine="1",model_name="sim-llm"} 2
            vllm:num_requests_waiting{engine="0",model_name="a}b \"c\""} 4.0 1712345678000
            vllm:kv_cache_usage_perc{engine="0"} 0.25
            vllm:kv_cache_usage_perc{engine="1"} 0.5
            vllm:prefix_cache_queries_total{engine="0",model_name="sim-llm"} 1.2e4
            vllm:prefix_cache_hits_total{engine="0",model_name="sim-llm"} 9216.0
            vllm:num_requests_running_other 100
            vllm:time_to_first_token_seconds_bucket{le="+Inf"} 42.0
            modelsim_inflight 3
            vllm:num_requests_waiting{engine="9"} NaN
            """.Replace("\n", "\r\n", StringComparison.Ordinal);
        Assert.True(VllmMetricsParser.TryParse(Encoding.UTF8.GetBytes(text), out var m));
        Assert.Equal(new VllmMetrics(Running: 5, Waiting: 4, KvUsage: 0.5, PrefixQueries: 12000, PrefixHits: 9216), m);
    }

    [Fact]
    public void Parser_refuses_a_page_without_vllm_scheduler_series()
    {
        Assert.False(VllmMetricsParser.TryParse("modelsim_inflight 3\n# vllm:num_requests_running 1\n"u8, out _));
        Assert.False(VllmMetricsParser.TryParse("<html>not found</html>"u8, out _));
        Assert.False(VllmMetricsParser.TryParse("vllm:num_requests_running{engine=\"0\" 3\n"u8, out _)); // labels never closed
        Assert.True(VllmMetricsParser.TryParse("vllm:num_requests_waiting 0"u8, out var m)); // no newline at the end
        Assert.Equal(0, m.Waiting);
    }

    /// <summary>
    /// Stranger review (issue 14): a replica reporting a negative queue (-1e308) or a KV usage outside 0 … 1 took all
    /// traffic and kept the prefixes it stole. Such a page is refused as unparsable (the replica is then scored by
    /// in-flight count, as a stale one), not read as an idle replica.
    /// </summary>
    [Theory]
    [InlineData("vllm:num_requests_running -1e308\nvllm:num_requests_waiting 0\n")]
    [InlineData("vllm:num_requests_running 0\nvllm:num_requests_waiting -1\n")]
    [InlineData("vllm:num_requests_running{engine=\"0\"} 2\nvllm:num_requests_running{engine=\"1\"} -3\n")]
    [InlineData("vllm:num_requests_running 0\nvllm:kv_cache_usage_perc 1.5\n")]
    [InlineData("vllm:num_requests_running 0\nvllm:gpu_cache_usage_perc -0.2\n")]
    [InlineData("vllm:num_requests_running 1e308\nvllm:num_requests_waiting 1e308\n")]
    public void Parser_refuses_negative_queues_and_kv_usage_outside_0_to_1_stranger_review(string page)
    {
        Assert.False(VllmMetricsParser.TryParse(Encoding.UTF8.GetBytes(page), out _));
        Assert.True(VllmMetricsParser.TryParse("vllm:num_requests_running 0\nvllm:kv_cache_usage_perc 1\n"u8, out var edge)); // the bounds themselves are valid
        Assert.Equal(1, edge.KvUsage);
    }

    [Fact]
    public void Prompt_text_is_role_and_content_of_each_message_in_order_whatever_the_property_order()
    {
        var body = """{"model":"m","messages":[{"content":"be brief","role":"system"},{"role":"user","content":[{"type":"text","text":"hi "},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"there"}]}],"max_tokens":3}"""u8;
        Assert.Equal("system\nbe brief\nuser\nhi there\n", PromptPrefix.FromJson(body));
        Assert.Equal("once upon", PromptPrefix.FromJson("""{"prompt":"once upon","model":"m"}"""u8));
        Assert.Null(PromptPrefix.FromJson("""{"model":"m"}"""u8));
        Assert.Null(PromptPrefix.FromJson("not json"u8));
        Assert.Null(PromptPrefix.FromJson("[1,2]"u8));
    }

    [Fact]
    public void Block_hashes_are_chained_full_blocks_only()
    {
        var shared = new string('s', 130);
        Span<ulong> a = stackalloc ulong[8];
        Span<ulong> b = stackalloc ulong[8];
        Assert.Equal(2, PromptPrefix.Chain(shared + "aaaa", a)); // 134 chars: two full blocks, the tail not hashed
        Assert.Equal(3, PromptPrefix.Chain(shared + new string('b', 62), b));
        Assert.Equal(a[0], b[0]);
        Assert.Equal(a[1], b[1]);

        // A different first block changes every later hash, though the later text is the same.
        Span<ulong> c = stackalloc ulong[8];
        PromptPrefix.Chain("x" + shared[1..] + "aaaa", c);
        Assert.NotEqual(a[0], c[0]);
        Assert.NotEqual(a[1], c[1]);

        Span<ulong> one = stackalloc ulong[1];
        Assert.Equal(1, PromptPrefix.Chain(shared, one)); // only as many as asked
    }

    [Fact]
    public void Prefix_table_matches_leading_blocks_evicts_least_recent_and_expires_entries()
    {
        var time = new FakeTimeProvider();
        var table = new PrefixTable(capacity: 4, ttl: TimeSpan.FromSeconds(10), time);
        var destinations = new[] { new DestinationState("a"), new DestinationState("b") };
        Span<int> matched = stackalloc int[2];

        table.Record([1, 2, 3], "a");
        table.Match([1, 2, 9], destinations, matched);
        Assert.Equal([2, 0], matched.ToArray());

        // b served the first block since: a still holds the longer prefix.
        table.Record([1], "b");
        table.Match([1, 2, 3], destinations, matched);
        Assert.Equal([3, 1], matched.ToArray());

        // A spill keeps the owner.
        table.Record([1, 2, 3], "b", replace: false);
        table.Match([1, 2, 3], destinations, matched);
        Assert.Equal([3, 1], matched.ToArray());

        // Capacity 4: the fourth block fills it, the fifth evicts the least recently used (3, the deepest block).
        table.Record([7, 8], "b");
        Assert.Equal(4, table.Count);
        table.Match([1, 2, 3], destinations, matched);
        Assert.Equal([2, 1], matched.ToArray());

        time.Advance(TimeSpan.FromSeconds(11));
        table.Match([7, 8], destinations, matched);
        Assert.Equal([0, 0], matched.ToArray());
    }

    /// <summary>
    /// A request records its anchor blocks (the first 16, then every 16th) and its last block: a conversation's next
    /// turn, which resends it whole, finds that last block, and so the replica that served its earlier turn even when a
    /// long shared prefix (owned by another replica) comes first (sglang#26263: routing by the shared start alone).
    /// </summary>
    [Fact]
    public void Prefix_table_records_anchors_and_the_last_block_so_a_later_turn_finds_its_replica()
    {
        var time = new FakeTimeProvider();
        var table = new PrefixTable(capacity: 10_000, ttl: TimeSpan.FromMinutes(5), time);
        var destinations = new[] { new DestinationState("a"), new DestinationState("b") };
        Span<int> matched = stackalloc int[2];
        ulong[] Chain(int length, ulong session) => [.. Enumerable.Range(0, length).Select(i => i < 80 ? (ulong)i + 1 : (session * 1000) + (ulong)i)];

        // a served the shared 80-block prefix (with a tail of its own): 16 + 4 anchors up to block 79, and its last block.
        table.Record(Chain(90, 1), "a");
        Assert.Equal(16 + 4 + 1, table.Count); // blocks 0-15, then 31, 47, 63, 79, and the last, 89

        // Turn 1 of session 2 spilled to b for load: the shared blocks keep their owner, b gets its own blocks.
        var turn1 = Chain(85, 2);
        table.Record(turn1, "b", replace: false);

        // Turn 2 resends turn 1 and adds 15 blocks: b served 85 of them, a the 80 shared ones.
        var turn2 = Chain(100, 2);
        Assert.Equal(turn1, turn2[..85]);
        table.Match(turn2, destinations, matched);
        Assert.Equal([80, 85], matched.ToArray());

        // Another session's first turn matches only the shared prefix; a stranger matches nothing.
        table.Match(Chain(100, 3), destinations, matched);
        Assert.Equal([80, 0], matched.ToArray());
        table.Match([.. Enumerable.Range(0, 100).Select(static i => 99_999UL + (ulong)i)], destinations, matched);
        Assert.Equal([0, 0], matched.ToArray());
    }

    [Fact]
    public void Settings_out_of_range_are_reported_with_their_key()
    {
        var errors = new List<Exception>();
        var settings = InferenceAwareSettings.Parse(new Dictionary<string, string>
        {
            ["InferenceAware.PrefixWeight"] = "3",
            ["InferenceAware.LoadFactor"] = "0.5",
            ["InferenceAware.PrefixBlocks"] = "1.5",
            ["InferenceAware.PrefixTtl"] = "soon",
        }, "ReverseProxy:Clusters:c", errors);
        Assert.Equal(3, settings.PrefixWeight);
        Assert.Equal(
        [
            "ReverseProxy:Clusters:c:Metadata:InferenceAware.LoadFactor must be a number from 1 to 100 (was '0.5').",
            "ReverseProxy:Clusters:c:Metadata:InferenceAware.PrefixBlocks must be a whole number from 1 to 1024 (was '1.5').",
            "ReverseProxy:Clusters:c:Metadata:InferenceAware.PrefixTtl must be a duration from 00:00:00.001 to 1.00:00:00 (hh:mm:ss or seconds) (was 'soon').",
        ], errors.Select(static e => e.Message));

        errors.Clear();
        ScrapeSettings.Of(new Dictionary<string, string> { ["MetricsPath"] = "metrics", ["MetricsInterval"] = "0" }, null, "ReverseProxy:Clusters:c:Destinations:d", errors);
        Assert.Equal(2, errors.Count);
        Assert.StartsWith("ReverseProxy:Clusters:c:Destinations:d:Metadata:MetricsPath must be", errors[0].Message, StringComparison.Ordinal);
        Assert.StartsWith("ReverseProxy:Clusters:c:Destinations:d:Metadata:MetricsInterval must be", errors[1].Message, StringComparison.Ordinal);
    }
}

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

    [Fact(Timeout = 90_000)]
    public async Task The_report_gives_the_runs_prefix_cache_hit_rate_from_the_model_servers_counters()
    {
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();

        // A warm-up's tokens do not count: the counters are read after it.
        var result = await TestHost.RunAsync(["load", "--target", sim.HttpAddress.ToString(), "--rate", "20", "--duration", "1s", "--warmup", "300ms",
            "--prefix-groups", "2", "--prefix-tokens", "200", "--prompt-tokens", "16", "--max-tokens", "4", "--progress", "none", "--report", dir.Combine("direct")]);
        Assert.True(result.ExitCode == 0, result.ToString());
        using (var report = TestHost.ReadReport(dir.Combine("direct")))
        {
            var r = report.RootElement;
            var cache = r.GetProperty("prefix_cache");
            Assert.Equal(20 * 216, cache.GetProperty("queries").GetDouble());
            Assert.Equal(20 * 192, cache.GetProperty("hits").GetDouble()); // the warm-up cached both prefixes
            Assert.Equal(192.0 / 216, r.GetProperty("prefix_cache_hit_rate").GetDouble(), 3);
            Assert.Equal($"{sim.HttpAddress}metrics", cache.GetProperty("metrics_urls")[0].GetString());
        }

        Assert.Contains("prefix cache  88.9% hit (3840 of 4320 prompt tokens cached;", result.Output, StringComparison.Ordinal);

        // Through the gateway the target's /metrics are not a model server's: no hit rate, unless --metrics-url names the replicas.
        await using var gateway = await TestHost.StartGatewayAsync(sim);
        var http = gateway.GetAddress("Http")!.ToString();
        result = await TestHost.RunAsync(["load", "--target", http, "--rate", "10", "--duration", "1s", "--max-tokens", "4", "--progress", "none", "--report", dir.Combine("gateway")]);
        Assert.True(result.ExitCode == 0, result.ToString());
        using (var report = TestHost.ReadReport(dir.Combine("gateway")))
        {
            Assert.False(report.RootElement.TryGetProperty("prefix_cache_hit_rate", out _));
        }

        result = await TestHost.RunAsync(["load", "--target", http, "--rate", "10", "--duration", "1s", "--max-tokens", "4", "--progress", "none",
            "--metrics-url", $"{sim.HttpAddress}metrics", "--report", dir.Combine("named")]);
        Assert.True(result.ExitCode == 0, result.ToString());
        using (var report = TestHost.ReadReport(dir.Combine("named")))
        {
            Assert.Equal(0, report.RootElement.GetProperty("prefix_cache_hit_rate").GetDouble()); // distinct synthetic prompts
            Assert.Equal(10 * 16, report.RootElement.GetProperty("prefix_cache").GetProperty("queries").GetDouble());
        }
    }

    /// <summary>
    /// Stranger review (issue 14): one failing --metrics-url dropped the whole hit rate. It is now summed over the URLs
    /// that answered, every failed URL is named, and the figure is marked partial (report.json and the summary).
    /// </summary>
    [Fact(Timeout = 90_000)]
    public async Task A_failing_metrics_url_leaves_a_partial_hit_rate_from_the_others_and_names_each_failure_stranger_review()
    {
        await using var sim = await TestHost.StartSimAsync();
        using var dir = TestHost.CreateTempDirectory();
        var refused = $"http://127.0.0.1:{TestSupport.FreePort.Next()}/metrics";
        var notFound = $"{sim.HttpAddress}no-such-metrics";
        var result = await TestHost.RunAsync(["load", "--target", sim.HttpAddress.ToString(), "--rate", "10", "--duration", "1s", "--max-tokens", "4",
            "--prefix-groups", "1", "--prefix-tokens", "200", "--prompt-tokens", "16", "--progress", "none",
            "--metrics-url", $"{sim.HttpAddress}metrics", "--metrics-url", refused, "--metrics-url", notFound, "--report", dir.Combine("partial")]);
        Assert.True(result.ExitCode == 0, result.ToString());
        using var report = TestHost.ReadReport(dir.Combine("partial"));
        var r = report.RootElement;
        Assert.True(r.GetProperty("prefix_cache_hit_rate").GetDouble() > 0.5, r.GetProperty("prefix_cache").ToString()); // 9 of 10 find the shared prefix
        var cache = r.GetProperty("prefix_cache");
        Assert.Equal(10 * 216, cache.GetProperty("queries").GetDouble());
        Assert.True(cache.GetProperty("partial").GetBoolean());
        var failed = cache.GetProperty("failed_metrics_urls").EnumerateArray().Select(static f => f.GetString()!).ToList();
        Assert.Equal(2, failed.Count);
        Assert.Contains(failed, f => f.StartsWith(refused, StringComparison.Ordinal));
        Assert.Contains(failed, f => f.StartsWith(notFound, StringComparison.Ordinal) && f.Contains("HTTP 404", StringComparison.Ordinal));
        Assert.Contains("PARTIAL", result.Output, StringComparison.Ordinal);
        Assert.Contains(refused, result.Output + result.Error, StringComparison.Ordinal);
    }

    /// <summary>Stranger review (issue 14): the --turns summary said "generated" without --generate-with and left out the prefix groups.</summary>
    [Fact(Timeout = 90_000)]
    public async Task The_turns_workload_line_names_prefix_groups_and_says_synthetic_without_a_generator_stranger_review()
    {
        await using var sim = await TestHost.StartSimAsync();
        var result = await TestHost.RunAsync(["load", "--target", sim.HttpAddress.ToString(), "--turns", "2", "--session-arrivals", "--rate", "2", "--duration", "1s",
            "--prompt-tokens", "12", "--prefix-groups", "2", "--prefix-tokens", "40", "--max-tokens", "4", "--progress", "none"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("synthetic conversations (2 turns after one of 2 shared 40-token prefixes", result.Output + result.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("generated conversations", result.Output + result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Prometheus_text_is_summed_over_series_and_other_metrics_are_ignored()
    {
        var (queries, hits, found) = Replay.Measurement.PrefixCacheCounters.Parse("""
            # HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
            # TYPE vllm:prefix_cache_hits_total counter
            vllm:prefix_cache_hits_total{engine="0",model_name="a}b "c""} 9216.0
            vllm:prefix_cache_hits_total{engine="1"} 1e3
            vllm:prefix_cache_hits_total_extra 5
            vllm:prefix_cache_queries_total{engine="0"} 10000 1700000000000
            vllm:prefix_cache_queries_total 2000
            """);
        Assert.True(found);
        Assert.Equal(10_216, hits);
        Assert.Equal(12_000, queries);
        Assert.False(Replay.Measurement.PrefixCacheCounters.Parse("gateway_requests_total 5").Found);
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

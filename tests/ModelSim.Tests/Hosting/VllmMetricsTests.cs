using System.Globalization;
using System.Text.RegularExpressions;
using Contracts.Tokens;
using ModelSim.Tests.Support;

namespace ModelSim.Tests.Hosting;

/// <summary><c>GET /metrics</c> carries vLLM's metrics under vLLM's names, labels and types, parseable as Prometheus text 0.0.4.</summary>
public sealed partial class VllmMetricsTests
{
    private static readonly string[] s_ttftBounds =
        ["0.001", "0.005", "0.01", "0.02", "0.04", "0.06", "0.08", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5", "5.0", "7.5", "10.0", "20.0", "40.0", "80.0", "160.0", "640.0", "2560.0", "+Inf"];

    private static readonly string[] s_types = ["counter", "gauge", "histogram"];

    [Fact]
    public async Task TheTextParsesWithVllmNamesTypesAndLabels()
    {
        await using var sim = await Sims.StartAsync(("Model", "org/model \"q\""), ("PrefillMs", 1), ("PerTokenMs", 1));
        using var client = Sims.Client(sim);
        await Sims.PostAsync(client, "/v1/completions", new { prompt = "hello", max_tokens = 2 });
        var families = Parse(await client.GetStringAsync("/metrics"));

        Assert.Equal("gauge", families["vllm:num_requests_running"].Type);
        Assert.Equal("gauge", families["vllm:num_requests_waiting"].Type);
        Assert.Equal("gauge", families["vllm:kv_cache_usage_perc"].Type);
        Assert.Equal("counter", families["vllm:prefix_cache_queries_total"].Type);
        Assert.Equal("counter", families["vllm:prefix_cache_hits_total"].Type);
        Assert.Equal("histogram", families["vllm:time_to_first_token_seconds"].Type);
        Assert.Equal("counter", families["modelsim_requests_total"].Type); // today's names stay

        foreach (var (name, family) in families)
        {
            if (!name.StartsWith("vllm:", StringComparison.Ordinal))
            {
                Assert.All(family.Samples, sample => Assert.Empty(sample.Labels));
                continue;
            }

            Assert.False(string.IsNullOrEmpty(family.Help));
            Assert.All(family.Samples, sample =>
            {
                Assert.Equal("org/model \"q\"", sample.Labels["model_name"]); // escaped on the wire, Sim:Model when parsed
                Assert.Equal("0", sample.Labels["engine"]);
            });
        }

        var ttft = families["vllm:time_to_first_token_seconds"].Samples;
        var buckets = ttft.Where(s => s.Name.EndsWith("_bucket", StringComparison.Ordinal)).ToList();
        Assert.Equal(s_ttftBounds, buckets.Select(b => b.Labels["le"]));
        for (var i = 1; i < buckets.Count; i++)
        {
            Assert.True(buckets[i].Value >= buckets[i - 1].Value, "buckets are cumulative");
        }

        var count = ttft.Single(s => s.Name == "vllm:time_to_first_token_seconds_count").Value;
        Assert.Equal(1, count);
        Assert.Equal(count, buckets[^1].Value);
        // "hello" is one token: prefill 1 + 0.05 ms, then a 1 ms step: TTFT 2.05 ms, in engine time (exact).
        Assert.Equal(0.00205, ttft.Single(s => s.Name == "vllm:time_to_first_token_seconds_sum").Value, 9);
        Assert.Equal(1, buckets[1].Value); // ≤ 5 ms
        Assert.Equal(0, buckets[0].Value); // > 1 ms
        Assert.Equal(1, families["vllm:prefix_cache_queries_total"].Samples[0].Value);
    }

    [Fact]
    public async Task RunningWaitingAndKvUsageFollowTheEngine()
    {
        // One slot, 100 blocks of 16: a 40-token prompt with 40 output tokens holds ceil(80 / 16) = 5 blocks.
        await using var sim = await Sims.StartAsync(("Slots", 1), ("PrefillMs", 1), ("PerTokenMs", 50), ("PrefixCache:Blocks", 100));
        using var client = Sims.Client(sim);
        var body = new { prompt = TokenCounter.BuildPrompt(40), max_tokens = 40, stream = true };
        using var first = await Sims.SendStreamingAsync(client, "/v1/completions", body);
        using var second = await Sims.SendStreamingAsync(client, "/v1/completions", body);
        await sim.WaitAsync(s => s.Inflight == 1 && s.QueueDepth == 1);

        var metrics = await Sims.ScrapeAsync(client);
        const string Labels = "{engine=\"0\",model_name=\"sim-llm\"}";
        Assert.Equal(1, metrics["vllm:num_requests_running" + Labels]);
        Assert.Equal(1, metrics["vllm:num_requests_waiting" + Labels]);
        Assert.Equal(0.05, metrics["vllm:kv_cache_usage_perc" + Labels], 9);
        Assert.Equal(1, metrics["modelsim_inflight"]);
    }

    private sealed record Sample(string Name, Dictionary<string, string> Labels, double Value);

    private sealed record Family(string Type, string Help, List<Sample> Samples);

    /// <summary>A strict parser of the text format 0.0.4: every sample belongs to the family declared by the TYPE line before it.</summary>
    private static Dictionary<string, Family> Parse(string text)
    {
        var families = new Dictionary<string, Family>();
        string? current = null;
        var helps = new Dictionary<string, string>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("# HELP ", StringComparison.Ordinal))
            {
                var rest = line["# HELP ".Length..];
                var space = rest.IndexOf(' ', StringComparison.Ordinal);
                helps[rest[..space]] = rest[(space + 1)..];
                continue;
            }

            if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                var parts = line.Split(' ');
                Assert.Equal(4, parts.Length);
                Assert.Matches(MetricName(), parts[2]);
                Assert.Contains(parts[3], s_types);
                Assert.False(families.ContainsKey(parts[2]), $"{parts[2]} declared twice");
                current = parts[2];
                families[current] = new Family(parts[3], helps.GetValueOrDefault(current, string.Empty), []);
                continue;
            }

            var match = SampleLine().Match(line);
            Assert.True(match.Success, $"not a sample line: {line}");
            var name = match.Groups["name"].Value;
            Assert.NotNull(current);
            var family = families[current!];
            var expected = family.Type == "histogram" ? new[] { current + "_bucket", current + "_count", current + "_sum" } : [current!];
            Assert.Contains(name, expected);
            if (family.Type == "counter")
            {
                Assert.EndsWith("_total", name, StringComparison.Ordinal);
            }

            var labels = new Dictionary<string, string>();
            foreach (Match label in Label().Matches(match.Groups["labels"].Value))
            {
                labels.Add(label.Groups["key"].Value, Regex.Unescape(label.Groups["value"].Value));
            }

            family.Samples.Add(new Sample(name, labels, double.Parse(match.Groups["value"].Value, CultureInfo.InvariantCulture)));
        }

        return families;
    }

    [GeneratedRegex("^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
    private static partial Regex MetricName();

    [GeneratedRegex("""^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*)\})? (?<value>[-+0-9.eE]+|\+Inf|NaN)$""")]
    private static partial Regex SampleLine();

    [GeneratedRegex("""(?<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?<value>(\\.|[^"\\])*)",?""")]
    private static partial Regex Label();
}

using System.Globalization;

namespace Replay.Measurement;

/// <summary>
/// The prefix-cache counters of vLLM-compatible model servers (vLLM v1, the simulator): <c>vllm:prefix_cache_queries_total</c>
/// and <c>vllm:prefix_cache_hits_total</c>, in prompt tokens, read from their Prometheus text at <c>/metrics</c>. The run's
/// hit rate is the ratio of the two counters' increases between a read before the measured run and one after it, summed
/// over every series (engines, models) and every metrics URL.
/// </summary>
internal static class PrefixCacheCounters
{
    /// <summary>The counter of prompt tokens looked up.</summary>
    public const string Queries = "vllm:prefix_cache_queries_total";

    /// <summary>The counter of prompt tokens found cached.</summary>
    public const string Hits = "vllm:prefix_cache_hits_total";

    /// <summary>
    /// Reads the counters of every URL: the sample of each that answered with <see cref="Hits"/>, and one problem per
    /// URL that did not (its address and why). One URL failing does not lose the others' figures.
    /// </summary>
    public static async Task<PrefixCacheReading> ReadAsync(HttpClient client, IReadOnlyList<Uri> urls, CancellationToken cancellationToken)
    {
        var samples = new Dictionary<Uri, PrefixCacheSample>();
        var problems = new List<(Uri Url, string Problem)>();
        foreach (var url in urls)
        {
            string text;
            try
            {
                using var response = await client.GetAsync(url, cancellationToken).ConfigureAwait(false);
                if (!response.IsSuccessStatusCode)
                {
                    problems.Add((url, $"{url}: HTTP {(int)response.StatusCode}"));
                    continue;
                }

                text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
            {
                problems.Add((url, $"{url}: {ex.Message}"));
                continue;
            }

            var (q, h, found) = Parse(text);
            if (!found)
            {
                problems.Add((url, $"{url}: no {Hits} (not a vLLM-compatible model server)"));
                continue;
            }

            samples[url] = new PrefixCacheSample(q, h);
        }

        return new PrefixCacheReading(samples, problems);
    }

    /// <summary>Sums <see cref="Queries"/> and <see cref="Hits"/> over their series in Prometheus text format 0.0.4; <c>Found</c> is false when no <see cref="Hits"/> sample is there.</summary>
    internal static (double Queries, double Hits, bool Found) Parse(string text)
    {
        double queries = 0, hits = 0;
        var found = false;
        foreach (var raw in text.AsSpan().EnumerateLines())
        {
            var line = raw.Trim();
            bool isHits;
            if (line.StartsWith(Hits, StringComparison.Ordinal))
            {
                isHits = true;
                line = line[Hits.Length..];
            }
            else if (line.StartsWith(Queries, StringComparison.Ordinal))
            {
                isHits = false;
                line = line[Queries.Length..];
            }
            else
            {
                continue;
            }

            if (line.IsEmpty || (line[0] != '{' && line[0] != ' ' && line[0] != '\t'))
            {
                continue; // another metric whose name starts the same
            }

            if (line[0] == '{')
            {
                // Skip the labels: '}' ends them unless inside a quoted value (which may hold \" escapes).
                var quoted = false;
                var i = 1;
                for (; i < line.Length; i++)
                {
                    var ch = line[i];
                    if (quoted && ch == '\\')
                    {
                        i++;
                    }
                    else if (ch == '"')
                    {
                        quoted = !quoted;
                    }
                    else if (ch == '}' && !quoted)
                    {
                        break;
                    }
                }

                if (i >= line.Length)
                {
                    continue;
                }

                line = line[(i + 1)..];
            }

            line = line.TrimStart();
            var end = line.IndexOfAny(' ', '\t');
            var value = end < 0 ? line : line[..end];
            if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
            {
                continue;
            }

            if (isHits)
            {
                hits += v;
                found = true;
            }
            else
            {
                queries += v;
            }
        }

        return (queries, hits, found);
    }
}

/// <summary>One URL's counters at one moment, in prompt tokens.</summary>
internal readonly record struct PrefixCacheSample(double Queries, double Hits);

/// <summary>One read of every metrics URL: the samples of those that answered, and each failure with its URL.</summary>
internal sealed record PrefixCacheReading(IReadOnlyDictionary<Uri, PrefixCacheSample> Samples, IReadOnlyList<(Uri Url, string Problem)> Problems)
{
    /// <summary>The problems, one sentence.</summary>
    public string Describe() => string.Join("; ", Problems.Select(static p => p.Problem));
}

/// <summary>
/// The run's prefix-cache figures (<c>prefix_cache_hit_rate</c>, <c>prefix_cache</c> in report.json): prompt tokens
/// looked up and found cached between the reads before and after the run, their ratio (null when nothing was looked
/// up), the metrics URLs summed (those that answered both reads) and the URLs that failed either read: with any
/// failed, the figure is <see cref="Partial"/> (stranger review, issue 14: one failing URL used to drop the whole rate).
/// </summary>
internal sealed record PrefixCacheReport(double Queries, double Hits, IReadOnlyList<string> MetricsUrls)
{
    /// <summary>Hits / queries of the run, or null when no prompt token was looked up.</summary>
    public double? HitRate => Queries > 0 ? Hits / Queries : null;

    /// <summary>The metrics URLs that failed the read before or after the run, each with why; empty when all answered.</summary>
    public IReadOnlyList<string> Failed { get; init; } = [];

    /// <summary>Whether some metrics URLs are missing from the figure.</summary>
    public bool Partial => Failed.Count > 0;

    /// <summary>The figures from two samples of one set of servers.</summary>
    public static PrefixCacheReport Between(PrefixCacheSample before, PrefixCacheSample after, IReadOnlyList<Uri> urls) =>
        new(Math.Max(0, after.Queries - before.Queries), Math.Max(0, after.Hits - before.Hits), [.. urls.Select(static u => u.ToString())]);

    /// <summary>
    /// The figures summed over the URLs that answered both reads (each URL's own difference, so a server that missed
    /// one read does not count a lifetime of tokens); null when none answered both.
    /// </summary>
    public static PrefixCacheReport? Between(PrefixCacheReading before, PrefixCacheReading after, IReadOnlyList<Uri> urls)
    {
        double queries = 0, hits = 0;
        var used = new List<string>();
        var failed = new List<string>();
        foreach (var url in urls)
        {
            if (before.Samples.TryGetValue(url, out var b) && after.Samples.TryGetValue(url, out var a))
            {
                queries += Math.Max(0, a.Queries - b.Queries);
                hits += Math.Max(0, a.Hits - b.Hits);
                used.Add(url.ToString());
            }
            else
            {
                var problem = after.Problems.FirstOrDefault(p => p.Url == url).Problem ?? before.Problems.FirstOrDefault(p => p.Url == url).Problem ?? $"{url}: not read";
                failed.Add(problem);
            }
        }

        return used.Count == 0 ? null : new PrefixCacheReport(queries, hits, used) { Failed = failed };
    }
}

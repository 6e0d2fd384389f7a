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

    /// <summary>Reads and sums the counters of every URL; null with the reason when one cannot be read or has no <see cref="Hits"/>.</summary>
    public static async Task<(PrefixCacheSample? Sample, string? Problem)> ReadAsync(HttpClient client, IReadOnlyList<Uri> urls, CancellationToken cancellationToken)
    {
        double queries = 0, hits = 0;
        foreach (var url in urls)
        {
            string text;
            try
            {
                using var response = await client.GetAsync(url, cancellationToken).ConfigureAwait(false);
                if (!response.IsSuccessStatusCode)
                {
                    return (null, $"{url}: HTTP {(int)response.StatusCode}");
                }

                text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
            {
                return (null, $"{url}: {ex.Message}");
            }

            var (q, h, found) = Parse(text);
            if (!found)
            {
                return (null, $"{url}: no {Hits} (not a vLLM-compatible model server)");
            }

            queries += q;
            hits += h;
        }

        return (new PrefixCacheSample(queries, hits), null);
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

/// <summary>The counters' sums at one moment, in prompt tokens.</summary>
internal readonly record struct PrefixCacheSample(double Queries, double Hits);

/// <summary>
/// The run's prefix-cache figures (<c>prefix_cache_hit_rate</c>, <c>prefix_cache</c> in report.json): prompt tokens
/// looked up and found cached between the reads before and after the run, their ratio (null when nothing was looked
/// up), and the metrics URLs read.
/// </summary>
internal sealed record PrefixCacheReport(double Queries, double Hits, IReadOnlyList<string> MetricsUrls)
{
    /// <summary>Hits / queries of the run, or null when no prompt token was looked up.</summary>
    public double? HitRate => Queries > 0 ? Hits / Queries : null;

    /// <summary>The figures from two samples.</summary>
    public static PrefixCacheReport Between(PrefixCacheSample before, PrefixCacheSample after, IReadOnlyList<Uri> urls) =>
        new(Math.Max(0, after.Queries - before.Queries), Math.Max(0, after.Hits - before.Hits), [.. urls.Select(static u => u.ToString())]);
}

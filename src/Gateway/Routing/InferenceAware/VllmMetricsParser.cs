using System.Buffers.Text;

namespace Gateway.Routing.InferenceAware;

/// <summary>What a replica's <c>/metrics</c> said: vLLM's scheduler gauges and prefix-cache counters.</summary>
/// <param name="Running"><c>vllm:num_requests_running</c>, summed over its series (engines, models).</param>
/// <param name="Waiting"><c>vllm:num_requests_waiting</c>, summed.</param>
/// <param name="KvUsage"><c>vllm:kv_cache_usage_perc</c> (a fraction 0 … 1 despite its name), the highest of its series.</param>
/// <param name="PrefixQueries"><c>vllm:prefix_cache_queries_total</c> (tokens), summed.</param>
/// <param name="PrefixHits"><c>vllm:prefix_cache_hits_total</c> (tokens), summed.</param>
internal readonly record struct VllmMetrics(double Running, double Waiting, double KvUsage, double PrefixQueries, double PrefixHits);

/// <summary>
/// Reads the vLLM series a replica picker needs from Prometheus text exposition format 0.0.4
/// (<c>name{label="v",…} value [timestamp]</c>, one sample a line; <c>#</c> lines are comments): lines are matched
/// by metric name, labels are skipped (a quoted label value may hold <c>}</c> or spaces), values parsed as
/// Prometheus floats (<c>NaN</c>, <c>+Inf</c> are ignored). No allocation.
/// </summary>
internal static class VllmMetricsParser
{
    private static ReadOnlySpan<byte> Running => "vllm:num_requests_running"u8;

    private static ReadOnlySpan<byte> Waiting => "vllm:num_requests_waiting"u8;

    private static ReadOnlySpan<byte> KvUsage => "vllm:kv_cache_usage_perc"u8;

    // vLLM before v0.10 named the same gauge gpu_cache_usage_perc.
    private static ReadOnlySpan<byte> GpuCacheUsage => "vllm:gpu_cache_usage_perc"u8;

    private static ReadOnlySpan<byte> Queries => "vllm:prefix_cache_queries_total"u8;

    private static ReadOnlySpan<byte> Hits => "vllm:prefix_cache_hits_total"u8;

    /// <summary>
    /// Parses <paramref name="text"/>; false when neither <c>vllm:num_requests_running</c> nor
    /// <c>vllm:num_requests_waiting</c> is present (not a vLLM replica's metrics, or a wrong path), or when a
    /// <c>num_requests_*</c> sample is negative or a KV usage sample is outside 0 … 1 (a broken exporter).
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> text, out VllmMetrics metrics)
    {
        double running = 0, waiting = 0, kv = 0, queries = 0, hits = 0;
        var seen = false;
        var invalid = false;
        while (!text.IsEmpty)
        {
            var end = text.IndexOf((byte)'\n');
            var line = end < 0 ? text : text[..end];
            text = end < 0 ? default : text[(end + 1)..];
            if (line.IsEmpty || line[0] == (byte)'#' || line[0] != (byte)'v')
            {
                continue;
            }

            if (!TrySample(line, out var name, out var value))
            {
                continue;
            }

            if (name.SequenceEqual(Running))
            {
                invalid |= value < 0;
                running += value;
                seen = true;
            }
            else if (name.SequenceEqual(Waiting))
            {
                invalid |= value < 0;
                waiting += value;
                seen = true;
            }
            else if (name.SequenceEqual(KvUsage) || name.SequenceEqual(GpuCacheUsage))
            {
                invalid |= value is < 0 or > 1;
                kv = Math.Max(kv, value);
            }
            else if (name.SequenceEqual(Queries))
            {
                queries += value;
            }
            else if (name.SequenceEqual(Hits))
            {
                hits += value;
            }
        }

        // A negative queue or a KV fraction outside [0, 1] is a broken exporter, not a load: read as it stood, a replica
        // reporting -1e308 running took all traffic and kept the prefixes it stole (stranger review, issue 14). The
        // whole page is refused, as one without the series is: counted unparsable, the replica scored by in-flight count.
        metrics = new VllmMetrics(running, waiting, Math.Clamp(kv, 0, 1), queries, hits);
        return seen && !invalid && double.IsFinite(running + waiting);
    }

    /// <summary>Splits one sample line into its metric name and value; false for a line that is not a finite sample.</summary>
    internal static bool TrySample(ReadOnlySpan<byte> line, out ReadOnlySpan<byte> name, out double value)
    {
        value = 0;
        line = line.TrimEnd((byte)'\r');
        var i = 0;
        while (i < line.Length && line[i] != (byte)'{' && line[i] != (byte)' ' && line[i] != (byte)'\t')
        {
            i++;
        }

        name = line[..i];
        if (i < line.Length && line[i] == (byte)'{')
        {
            // Skip the labels: quoted values may hold '}', and escape '"' as \".
            var quoted = false;
            for (i++; i < line.Length; i++)
            {
                var c = line[i];
                if (quoted && c == (byte)'\\')
                {
                    i++;
                }
                else if (c == (byte)'"')
                {
                    quoted = !quoted;
                }
                else if (!quoted && c == (byte)'}')
                {
                    break;
                }
            }

            if (i >= line.Length)
            {
                return false;
            }

            i++;
        }

        var rest = line[i..].TrimStart(" \t"u8);
        var space = rest.IndexOfAny((byte)' ', (byte)'\t');
        var number = space < 0 ? rest : rest[..space];
        return !name.IsEmpty && Utf8Parser.TryParse(number, out value, out var used) && used == number.Length && double.IsFinite(value);
    }
}

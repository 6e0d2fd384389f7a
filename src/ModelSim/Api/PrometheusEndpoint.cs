using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.Http;
using ModelSim.Engine;

namespace ModelSim.Api;

/// <summary>
/// <c>GET /metrics</c>: the engine's exact counters in the Prometheus text exposition format (version 0.0.4), rendered
/// from one consistent <see cref="GenerationEngine.GetStats"/> snapshot of this instance, so several simulators in one
/// process never mix their numbers. Not on the request path; a scrape allocates one string.
/// </summary>
/// <remarks>
/// After the <c>modelsim_*</c> family come the vLLM metrics a router reads, under vLLM's own names (the <c>vllm:</c>
/// prefix, which OpenTelemetry's Prometheus exporter cannot produce, so they are written here by hand) and in the form
/// vLLM's <c>prometheus_client</c> writes them: labels <c>engine="0"</c> and <c>model_name</c> (= <c>Sim:Model</c>)
/// sorted by name, counters' HELP and TYPE lines under the <c>_total</c> name, values as floats (<c>3.0</c>).
/// </remarks>
internal static class PrometheusEndpoint
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    public static Task WriteAsync(HttpContext context, GenerationEngine engine)
    {
        context.Response.ContentType = ContentType;
        return context.Response.WriteAsync(Render(engine), CancellationToken.None);
    }

    /// <summary>Renders every metric; names and meanings are listed in docs/modelsim.md.</summary>
    public static string Render(GenerationEngine engine)
    {
        var s = engine.GetStats();
        var o = engine.Options;
        var text = new StringBuilder(2048);
        Counter(text, "modelsim_requests_total", "Generation requests that reached the engine (HTTP, gRPC, WebSocket), whatever became of them.", s.Requests);
        Counter(text, "modelsim_rejected_total", "Requests refused at once because every slot was busy and the queue was full.", s.Rejected);
        Counter(text, "modelsim_completed_total", "Requests that generated all their tokens.", s.Completed);
        Counter(text, "modelsim_cancelled_total", "Requests whose client went away while running or queued.", s.Cancelled);
        Counter(text, "modelsim_failed_total", "Requests failed by a collapse (or cut off by shutdown).", s.Failed);
        Counter(text, "modelsim_bad_requests_total", "Malformed requests answered 400 (not in modelsim_requests_total).", s.BadRequests);
        Counter(text, "modelsim_prompt_tokens_total", "Prompt tokens of requests that got a slot.", s.PromptTokens);
        Counter(text, "modelsim_generated_tokens_total", "Output tokens generated.", s.GeneratedTokens);
        Counter(text, "modelsim_collapses_total", "Collapses since start.", s.Collapses);
        Counter(text, "modelsim_stalls_total", "Stalls since start.", s.Stalls);
        Gauge(text, "modelsim_inflight", "Sequences holding a slot (prefill or decode).", s.Inflight);
        Gauge(text, "modelsim_queue_depth", "Requests waiting for a slot.", s.QueueDepth);
        Gauge(text, "modelsim_queue_depth_max", "Highest queue depth since start.", s.QueueDepthMax);
        Gauge(text, "modelsim_slots", "Configured slots (Sim:Slots).", s.Slots);
        Gauge(text, "modelsim_queue_capacity", "Configured queue capacity (Sim:Queue).", o.Queue);
        Gauge(text, "modelsim_collapsed", "1 while a collapse is in effect, else 0.", engine.IsCollapsed ? 1 : 0);
        RenderVllm(text, engine, s);
        return text.ToString();
    }

    /// <summary>The <c>vllm:*</c> metrics (see the type's remarks); names and meanings are listed in docs/modelsim.md.</summary>
    private static void RenderVllm(StringBuilder text, GenerationEngine engine, SimStats s)
    {
        var labels = "engine=\"0\",model_name=\"" + EscapeLabel(engine.Options.Model) + "\"";
        VllmSample(text, "vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", labels, s.Inflight);
        VllmSample(text, "vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", labels, s.QueueDepth);
        VllmSample(text, "vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", labels,
            s.KvBlocks == 0 ? 0 : (double)s.KvBlocksUsed / s.KvBlocks);
        VllmSample(text, "vllm:prefix_cache_queries_total", "counter",
            "Prefix cache queries, in terms of number of queried tokens.", labels, s.PrefixCacheQueries);
        VllmSample(text, "vllm:prefix_cache_hits_total", "counter",
            "Prefix cache hits, in terms of number of cached tokens.", labels, s.PrefixCacheHits);

        const string Ttft = "vllm:time_to_first_token_seconds";
        var (buckets, count, sum) = engine.GetTtftHistogram();
        text.Append("# HELP ").Append(Ttft).Append(" Histogram of time to first token in seconds.\n");
        text.Append("# TYPE ").Append(Ttft).Append(" histogram\n");
        var bounds = GenerationEngine.TtftBucketBounds;
        var cumulative = 0L;
        for (var i = 0; i <= bounds.Length; i++)
        {
            cumulative += buckets[i];
            var le = i < bounds.Length ? Float(bounds[i]) : "+Inf";
            text.Append(Ttft).Append("_bucket{engine=\"0\",le=\"").Append(le).Append("\",model_name=\"")
                .Append(EscapeLabel(engine.Options.Model)).Append("\"} ").Append(Float(cumulative)).Append('\n');
        }

        text.Append(Ttft).Append("_count{").Append(labels).Append("} ").Append(Float(count)).Append('\n');
        text.Append(Ttft).Append("_sum{").Append(labels).Append("} ").Append(Float(sum)).Append('\n');
    }

    private static void VllmSample(StringBuilder text, string name, string type, string help, string labels, double value)
    {
        text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        text.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
        text.Append(name).Append('{').Append(labels).Append("} ").Append(Float(value)).Append('\n');
    }

    /// <summary>A value as Python's <c>repr(float)</c> writes it, as prometheus_client does: <c>3.0</c>, <c>0.25</c>, <c>1e-05</c>.</summary>
    internal static string Float(double value)
    {
        if (double.IsPositiveInfinity(value))
        {
            return "+Inf";
        }

        var shortest = value.ToString("R", CultureInfo.InvariantCulture);
        return shortest.Contains('.', StringComparison.Ordinal) || shortest.Contains('E', StringComparison.Ordinal) || shortest == "NaN"
            ? shortest.Replace("E", "e", StringComparison.Ordinal)
            : shortest + ".0";
    }

    /// <summary>Escapes a label value for the text format: backslash, double quote and line feed.</summary>
    internal static string EscapeLabel(string value) =>
        value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private static void Counter(StringBuilder text, string name, string help, long value) => Write(text, name, help, "counter", value);

    private static void Gauge(StringBuilder text, string name, string help, long value) => Write(text, name, help, "gauge", value);

    private static void Write(StringBuilder text, string name, string help, string type, long value)
    {
        text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        text.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
        text.Append(name).Append(' ').Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');
    }
}

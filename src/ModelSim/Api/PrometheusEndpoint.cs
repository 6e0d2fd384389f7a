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
        return text.ToString();
    }

    private static void Counter(StringBuilder text, string name, string help, long value) => Write(text, name, help, "counter", value);

    private static void Gauge(StringBuilder text, string name, string help, long value) => Write(text, name, help, "gauge", value);

    private static void Write(StringBuilder text, string name, string help, string type, long value)
    {
        text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        text.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
        text.Append(name).Append(' ').Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');
    }
}

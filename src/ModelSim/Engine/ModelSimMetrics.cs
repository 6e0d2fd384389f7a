using System.Diagnostics.Metrics;

namespace ModelSim.Engine;

/// <summary>
/// Publishes the engine's exact counters as observable instruments on the <c>ModelSim</c> meter (from
/// <see cref="IMeterFactory"/>, so each simulator's DI container owns its own meter), for OpenTelemetry users:
/// <c>AddMeter(ModelSimMetrics.MeterName)</c>. Names follow the <c>modelsim.</c> convention and carry units, so a
/// Prometheus exporter renders them as <c>modelsim_requests_total</c> etc., the names <c>GET /metrics</c> uses.
/// </summary>
/// <remarks>
/// Observable instruments read the engine's Interlocked counters when a listener collects: nothing is recorded on the
/// request path, and two simulators in one process never mix their numbers (each has its own <see cref="Meter"/>).
/// </remarks>
internal sealed class ModelSimMetrics
{
    /// <summary>Name of the meter.</summary>
    public const string MeterName = "ModelSim";

    public ModelSimMetrics(IMeterFactory meterFactory, GenerationEngine engine)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);
        ArgumentNullException.ThrowIfNull(engine);
        Meter = meterFactory.Create(MeterName);
        var e = engine;
        Meter.CreateObservableCounter("modelsim.requests", () => e.RequestsTotal, "{request}", "Generation requests that reached the engine.");
        Meter.CreateObservableCounter("modelsim.rejected", () => e.RejectedTotal, "{request}", "Requests refused because the queue was full.");
        Meter.CreateObservableCounter("modelsim.completed", () => e.CompletedTotal, "{request}", "Requests that generated all their tokens.");
        Meter.CreateObservableCounter("modelsim.cancelled", () => e.CancelledTotal, "{request}", "Requests whose client went away.");
        Meter.CreateObservableCounter("modelsim.failed", () => e.FailedTotal, "{request}", "Requests failed by a collapse or shutdown.");
        Meter.CreateObservableCounter("modelsim.bad_requests", () => e.BadRequestsTotal, "{request}", "Malformed requests answered 400.");
        Meter.CreateObservableCounter("modelsim.prompt_tokens", () => e.PromptTokensTotal, "{token}", "Prompt tokens of requests that got a slot.");
        Meter.CreateObservableCounter("modelsim.generated_tokens", () => e.GeneratedTokensTotal, "{token}", "Output tokens generated.");
        Meter.CreateObservableCounter("modelsim.collapses", () => e.CollapsesTotal, "{collapse}", "Collapses since start.");
        Meter.CreateObservableCounter("modelsim.stalls", () => e.StallsTotal, "{stall}", "Stalls since start.");
        Meter.CreateObservableUpDownCounter("modelsim.inflight", () => e.Inflight, "{request}", "Sequences holding a slot.");
        Meter.CreateObservableUpDownCounter("modelsim.queue.depth", () => e.QueueDepth, "{request}", "Requests waiting for a slot.");
        Meter.CreateObservableGauge("modelsim.queue.depth.max", () => e.QueueDepthMax, "{request}", "Highest queue depth since start.");
        Meter.CreateObservableUpDownCounter("modelsim.slots", () => e.Options.Slots, "{slot}", "Configured slots (batch size).");
        Meter.CreateObservableCounter("modelsim.prefix_cache.queries", () => e.PrefixCacheQueriesTotal, "{token}", "Prompt tokens looked up in the prefix cache.");
        Meter.CreateObservableCounter("modelsim.prefix_cache.hits", () => e.PrefixCacheHitsTotal, "{token}", "Prompt tokens found in the prefix cache.");
        Meter.CreateObservableGauge("modelsim.kv_cache.usage", () => e.KvCacheUsage, "1", "Fraction of KV blocks held by running sequences.");
    }

    /// <summary>The meter the instruments live on.</summary>
    public Meter Meter { get; }
}

using System.Diagnostics.Metrics;
using Gateway.Telemetry;

namespace Gateway.Recording;

/// <summary>
/// Recording instruments on the gateway's meter. Prometheus names: <c>recording_written_total</c>,
/// <c>recording_dropped_total{reason}</c> (reasons: <c>queue_full</c>, <c>store_unavailable</c>),
/// <c>recording_units_dropped_total</c>, <c>recording_queue_depth</c>, <c>recording_store_up</c>,
/// <c>recording_batch_duration_seconds</c>.
/// </summary>
internal sealed class RecordingMetrics
{
    /// <summary>Reason: the in-memory queue was full (the store is slower than the traffic, or down).</summary>
    public const string QueueFull = "queue_full";

    /// <summary>Reason: the store stayed unavailable for longer than <c>Gateway:Recording:RetryFor</c>.</summary>
    public const string StoreUnavailable = "store_unavailable";

    private readonly Counter<long> _written;
    private readonly Counter<long> _dropped;
    private readonly Counter<long> _unitsDropped;
    private readonly Histogram<double> _batch;
    private long _dropTotal;

    public RecordingMetrics(GatewayMetrics metrics)
    {
        var meter = metrics.Meter;
        _written = meter.CreateCounter<long>("recording.written", "{exchange}", "Exchanges written to the recording store.");
        _dropped = meter.CreateCounter<long>("recording.dropped", "{exchange}", "Exchanges not recorded, by reason (queue_full, store_unavailable).");
        _unitsDropped = meter.CreateCounter<long>("recording.units.dropped", "{unit}", "Stream units left out of an exchange over Gateway:Recording:MaxUnits.");
        _batch = meter.CreateHistogram<double>("recording.batch.duration", "s", "Time to write one batch to the store.");

        // Every series exists from the start, at 0, so that an alert on a rate sees 0 rather than no data.
        _written.Add(0);
        _unitsDropped.Add(0);
        _dropped.Add(0, new KeyValuePair<string, object?>("reason", QueueFull));
        _dropped.Add(0, new KeyValuePair<string, object?>("reason", StoreUnavailable));
    }

    /// <summary>Exchanges dropped so far, all reasons (for the admin API and tests).</summary>
    public long DroppedTotal => Interlocked.Read(ref _dropTotal);

    /// <summary>Exchanges written so far.</summary>
    public long WrittenTotal { get; private set; }

    public void Written(int count)
    {
        WrittenTotal += count;
        _written.Add(count);
    }

    public void Dropped(string reason, int count = 1)
    {
        Interlocked.Add(ref _dropTotal, count);
        _dropped.Add(count, new KeyValuePair<string, object?>("reason", reason));
    }

    public void UnitsDropped(int count) => _unitsDropped.Add(count);

    public void Batch(double seconds) => _batch.Record(seconds);

    /// <summary>Registers the observable gauges.</summary>
    public static void Observe(GatewayMetrics metrics, Func<int> queueDepth, Func<bool> storeUp)
    {
        metrics.Meter.CreateObservableGauge("recording.queue.depth", queueDepth, "{exchange}", "Exchanges waiting to be written.");
        metrics.Meter.CreateObservableGauge("recording.store.up", () => storeUp() ? 1 : 0, description: "1 when the last write to the store succeeded, 0 while it fails.");
    }
}

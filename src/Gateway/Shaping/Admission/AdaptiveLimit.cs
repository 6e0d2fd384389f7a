namespace Gateway.Shaping.Admission;

/// <summary>
/// An adaptive in-flight limit after the Gradient2 algorithm of Netflix's concurrency-limits library
/// (<c>com.netflix.concurrency.limits.limit.Gradient2Limit</c>), in the spirit of Envoy's adaptive concurrency filter:
/// <code>
/// longRtt  ← EMA of the latency samples (window N)           // the latency the backend gives when not queueing
/// gradient = clamp(tolerance · longRtt / sampleRtt, 0.5, 1)   // below 1 when latency rises above what is normal
/// estimate = limit · gradient + √limit                        // shrink with the gradient, probe upwards by a queue of √limit
/// limit    ← limit · (1 − smoothing) + estimate · smoothing, clamped to [min, max]
/// </code>
/// A sample taken while fewer than half the permits were in use does not raise the limit (the backend was not the
/// bottleneck). When the long-term average drifts above twice the sample, it is pulled down so that a past overload
/// does not anchor it. As in Gradient2, a latency that stays high for about <c>LongWindow</c> samples becomes the new
/// normal and the limit grows again: the controller reacts to change, so <c>MaxLimit</c> (the model server's batch
/// slots) remains the hard bound. Not thread-safe: the caller holds its lock.
/// </summary>
internal sealed class AdaptiveLimit
{
    private readonly AdaptiveOptions _options;
    private double _longRtt;

    public AdaptiveLimit(AdaptiveOptions options, int initial)
    {
        _options = options;
        Limit = Math.Clamp(initial, options.MinLimit, options.MaxLimit);
    }

    /// <summary>The current limit (fractional; permits are its floor).</summary>
    public double Limit { get; private set; }

    /// <summary>Feeds one latency sample taken with <paramref name="inFlight"/> requests in flight.</summary>
    /// <param name="rttMs">The request's latency to its first response byte, in milliseconds.</param>
    /// <param name="inFlight">Requests in flight when it completed.</param>
    public void Sample(double rttMs, int inFlight)
    {
        if (rttMs <= 0 || double.IsNaN(rttMs))
        {
            return;
        }

        var alpha = 2.0 / (_options.LongWindow + 1);
        _longRtt = _longRtt == 0 ? rttMs : _longRtt + (alpha * (rttMs - _longRtt));
        if (_longRtt / rttMs > 2)
        {
            _longRtt *= 0.95;
        }

        var gradient = Math.Clamp(_options.Tolerance * _longRtt / rttMs, 0.5, 1.0);
        var estimate = (Limit * gradient) + Math.Sqrt(Limit);
        if (estimate > Limit && inFlight < Limit / 2)
        {
            return;
        }

        var next = (Limit * (1 - _options.Smoothing)) + (estimate * _options.Smoothing);
        Limit = Math.Clamp(next, _options.MinLimit, _options.MaxLimit);
    }
}

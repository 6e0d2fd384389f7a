namespace Gateway.Shaping.Admission;

/// <summary>
/// An adaptive in-flight limit after the gradient controller of Envoy's adaptive concurrency filter
/// (envoy/source/extensions/filters/http/adaptive_concurrency/controller/gradient_controller.h), which builds on
/// Netflix concurrency-limits' gradient idea:
/// <code>
/// minRTT   = a low percentile (p10) of latencies measured with the limit pinned at MinLimit (no queueing),
///            re-measured every MinRttInterval
/// sample   = p90 of the latencies of the last SampleWindow
/// gradient = clamp(Tolerance · minRTT / sample, 0.5, 2)
/// estimate = limit · gradient + √limit            // shrink when latency rises above minRTT·Tolerance, else probe up
/// limit    ← limit · (1 − Smoothing) + estimate · Smoothing, clamped to [MinLimit, MaxLimit]
/// </code>
/// The baseline is the no-load latency, not a moving average, so a backend whose queue keeps growing keeps the limit
/// down instead of becoming the new normal. Tolerance is the latency increase accepted from batching: a GPU's per-token
/// time grows with its batch (ModelSim: up to 1.5x at a full batch), so 1.5 lets the batch fill and no more. Samples
/// taken while fewer than half the permits were in use never raise the limit (the backend was not the bottleneck).
/// The latency signal is the time to the first response byte (time to first token for streams). Not thread-safe: the
/// caller holds its lock.
/// </summary>
internal sealed class AdaptiveLimit
{
    private readonly AdaptiveOptions _options;
    private readonly List<double> _window = [];
    private readonly List<double> _calibration = [];
    private double _limit;
    private double _windowStart;
    private double _nextCalibration;

    public AdaptiveLimit(AdaptiveOptions options, int initial)
    {
        _options = options;
        _limit = Math.Clamp(initial, options.MinLimit, options.MaxLimit);
        Calibrating = true;
    }

    /// <summary>True while the no-load latency is being measured (the limit is then <see cref="AdaptiveOptions.MinLimit"/>).</summary>
    public bool Calibrating { get; private set; }

    /// <summary>Incremented at each calibration: only requests admitted during the current one measure the no-load latency.</summary>
    public int Epoch { get; private set; }

    /// <summary>The latest no-load latency in milliseconds (0 until measured).</summary>
    public double MinRttMs { get; private set; }

    /// <summary>The current limit (fractional; permits are its floor).</summary>
    public double Limit => Calibrating ? _options.MinLimit : _limit;

    /// <summary>Feeds one latency sample.</summary>
    /// <param name="rttMs">The request's latency to its first response byte, in milliseconds.</param>
    /// <param name="inFlight">Requests in flight when it completed.</param>
    /// <param name="nowMs">Monotonic time, in milliseconds.</param>
    /// <param name="admittedCalibrating">Whether the request was admitted during calibration <paramref name="epoch"/>.</param>
    /// <param name="epoch">The calibration epoch at the request's admission.</param>
    public void Sample(double rttMs, int inFlight, double nowMs, bool admittedCalibrating, int epoch)
    {
        if (rttMs <= 0 || double.IsNaN(rttMs))
        {
            return;
        }

        if (Calibrating)
        {
            if (admittedCalibrating && epoch == Epoch)
            {
                _calibration.Add(rttMs);
                if (_calibration.Count >= _options.MinRttSamples)
                {
                    MinRttMs = Percentile(_calibration, 10);
                    Calibrating = false;
                    _calibration.Clear();
                    _window.Clear();
                    _windowStart = nowMs;
                    _nextCalibration = nowMs + _options.MinRttInterval.TotalMilliseconds;
                }
            }

            return;
        }

        if (admittedCalibrating)
        {
            return; // admitted at the pinned limit: says nothing about the current one
        }

        _window.Add(rttMs);
        if (nowMs - _windowStart >= _options.SampleWindow.TotalMilliseconds && _window.Count >= 3)
        {
            var sample = Percentile(_window, 90);
            var gradient = Math.Clamp(_options.Tolerance * MinRttMs / sample, 0.5, 2.0);
            var estimate = (_limit * gradient) + Math.Sqrt(_limit);
            if (estimate > _limit && inFlight < _limit / 2)
            {
                estimate = _limit; // not the bottleneck: do not grow
            }

            _limit = Math.Clamp((_limit * (1 - _options.Smoothing)) + (estimate * _options.Smoothing), _options.MinLimit, _options.MaxLimit);
            _window.Clear();
            _windowStart = nowMs;
        }

        if (nowMs >= _nextCalibration)
        {
            Calibrating = true;
            Epoch++;
        }
    }

    private static double Percentile(List<double> values, double percentile)
    {
        values.Sort();
        var index = (int)Math.Ceiling(percentile / 100 * values.Count) - 1;
        return values[Math.Clamp(index, 0, values.Count - 1)];
    }
}

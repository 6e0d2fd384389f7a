using HdrHistogram;

namespace Replay.Measurement;

/// <summary>HdrHistogram settings and helpers: values in microseconds, 1 µs to 1 hour, 3 significant digits (0.1% error).</summary>
internal static class Histograms
{
    /// <summary>Largest trackable value: one hour in microseconds; larger values are clamped to it.</summary>
    public const long HighestMicros = 3_600_000_000;

    /// <summary>A histogram for a whole run.</summary>
    public static LongHistogram Create() => new(1, HighestMicros, 3);

    /// <summary>A smaller histogram (2 significant digits) for one second of the series.</summary>
    public static LongHistogram CreateCoarse() => new(1, HighestMicros, 2);

    /// <summary>Records <paramref name="micros"/>, clamped to [1, <see cref="HighestMicros"/>].</summary>
    public static void Record(LongHistogram histogram, long micros) => histogram.RecordValue(Math.Clamp(micros, 1, HighestMicros));

    /// <summary>The value at <paramref name="percentile"/> in milliseconds; 0 for an empty histogram.</summary>
    public static double Ms(HistogramBase histogram, double percentile) =>
        histogram.TotalCount == 0 ? 0 : histogram.GetValueAtPercentile(percentile) / 1000.0;

    /// <summary>The maximum in milliseconds; 0 for an empty histogram.</summary>
    public static double MaxMs(HistogramBase histogram) => histogram.TotalCount == 0 ? 0 : histogram.GetMaxValue() / 1000.0;

    /// <summary>The mean in milliseconds; 0 for an empty histogram.</summary>
    public static double MeanMs(HistogramBase histogram) => histogram.TotalCount == 0 ? 0 : histogram.GetMean() / 1000.0;
}

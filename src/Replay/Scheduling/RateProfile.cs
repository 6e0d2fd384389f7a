using System.Globalization;

namespace Replay.Scheduling;

/// <summary>
/// An arrival-rate curve λ(t) over a run, made of segments whose rate moves linearly from a start to an end value
/// (constant when both are equal). Arrivals are placed by inverting its cumulative intensity Λ(t) = ∫₀ᵗ λ(s) ds, so
/// the i-th arrival's time is a pure function of i (and of the random draws), never of when earlier sends happened:
/// no drift, however late the generator runs.
/// </summary>
internal sealed class RateProfile
{
    private readonly Segment[] _segments;

    /// <summary>One piece of the curve: from <see cref="Start"/> for <see cref="Duration"/> seconds, rate linear from <see cref="From"/> to <see cref="To"/>.</summary>
    internal readonly record struct Segment(double Start, double Duration, double From, double To)
    {
        /// <summary>Arrivals expected in the segment: (From + To) / 2 × Duration.</summary>
        public double Count => (From + To) / 2 * Duration;
    }

    private RateProfile(string description, Segment[] segments)
    {
        Description = description;
        _segments = segments;
        double total = 0;
        var cumulative = new double[segments.Length + 1];
        for (var i = 0; i < segments.Length; i++)
        {
            total += segments[i].Count;
            cumulative[i + 1] = total;
        }

        Cumulative = cumulative;
        Duration = segments.Length == 0 ? 0 : segments[^1].Start + segments[^1].Duration;
    }

    /// <summary>How the profile was given, for the console and the report.</summary>
    public string Description { get; }

    /// <summary>Length of the profile in seconds.</summary>
    public double Duration { get; }

    /// <summary>The segments, in time order.</summary>
    internal IReadOnlyList<Segment> Segments => _segments;

    /// <summary>Λ at each segment boundary.</summary>
    private double[] Cumulative { get; }

    /// <summary>Expected arrivals over the whole profile, Λ(Duration).</summary>
    public double ExpectedCount => Cumulative[^1];

    /// <summary>A constant rate.</summary>
    /// <param name="rate">Requests per second, &gt; 0.</param>
    /// <param name="duration">Seconds, &gt; 0.</param>
    public static RateProfile Constant(double rate, double duration) =>
        new(Fmt($"constant {rate}/s for {duration}s"), [new Segment(0, duration, rate, rate)]);

    /// <summary>A linear ramp from <paramref name="from"/> to <paramref name="to"/> requests/s over <paramref name="duration"/> seconds.</summary>
    public static RateProfile Ramp(double from, double to, double duration) =>
        new(Fmt($"ramp {from}/s to {to}/s over {duration}s"), [new Segment(0, duration, from, to)]);

    /// <summary>
    /// Steps: <paramref name="from"/> requests/s, multiplied by <paramref name="factor"/> (or raised by
    /// <paramref name="add"/>) every <paramref name="every"/> seconds, capped at <paramref name="to"/>; for
    /// <paramref name="duration"/> seconds, or, when null, until one full step at <paramref name="to"/>.
    /// </summary>
    public static RateProfile Steps(double from, double to, double every, double factor, double add, double? duration)
    {
        var segments = new List<Segment>();
        var rate = from;
        var start = 0.0;
        var limit = duration ?? double.MaxValue;
        while (start < limit - 1e-9)
        {
            var length = Math.Min(every, limit - start);
            segments.Add(new Segment(start, length, rate, rate));
            start += length;
            if (duration is null && rate >= to)
            {
                break;
            }

            rate = Math.Min(to, add > 0 ? rate + add : rate * factor);
        }

        var step = add > 0 ? Fmt($"+{add}/s") : Fmt($"x{factor}");
        return new(Fmt($"steps {from}/s to {to}/s, {step} every {every}s for {start}s"), [.. segments]);
    }

    /// <summary>A base rate with one spike: <paramref name="spikeRate"/> from <paramref name="at"/> for <paramref name="length"/> seconds.</summary>
    public static RateProfile Spike(double baseRate, double spikeRate, double at, double length, double duration)
    {
        var segments = new List<Segment>();
        var end = Math.Min(duration, at + length);
        if (at > 0)
        {
            segments.Add(new Segment(0, Math.Min(at, duration), baseRate, baseRate));
        }

        if (end > at)
        {
            segments.Add(new Segment(at, end - at, spikeRate, spikeRate));
        }

        if (duration > end)
        {
            segments.Add(new Segment(end, duration - end, baseRate, baseRate));
        }

        return new(Fmt($"spike {baseRate}/s, {spikeRate}/s from {at}s for {length}s, {duration}s in all"), [.. segments]);
    }

    /// <summary>The intended rate λ(t) at <paramref name="t"/> seconds (0 outside the profile).</summary>
    public double RateAt(double t)
    {
        foreach (var s in _segments)
        {
            if (t >= s.Start && t < s.Start + s.Duration)
            {
                return s.From + ((s.To - s.From) * (t - s.Start) / s.Duration);
            }
        }

        return 0;
    }

    /// <summary>
    /// Λ⁻¹(u): the time at which the cumulative intensity reaches <paramref name="u"/>, or +∞ past the end. Within a
    /// linear segment (λ = r₀ + a·τ) it solves a·τ²/2 + r₀·τ = Δu in the cancellation-free form
    /// τ = 2Δu / (r₀ + √(r₀² + 2aΔu)), which also holds for a = 0 and for r₀ = 0.
    /// </summary>
    public double InverseCumulative(double u)
    {
        if (u < 0)
        {
            return 0;
        }

        var i = Array.BinarySearch(Cumulative, u);
        var index = i >= 0 ? i : ~i - 1; // the segment whose [Λstart, Λend) holds u
        if (index >= _segments.Length)
        {
            return double.PositiveInfinity;
        }

        var s = _segments[index];
        var du = u - Cumulative[index];
        var a = (s.To - s.From) / s.Duration;
        var denominator = s.From + Math.Sqrt(Math.Max(0, (s.From * s.From) + (2 * a * du)));
        var tau = denominator <= 0 ? 0 : 2 * du / denominator;
        return s.Start + tau;
    }

    private static string Fmt(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

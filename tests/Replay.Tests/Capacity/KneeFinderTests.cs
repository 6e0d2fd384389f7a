using Replay.Capacity;
using Replay.Measurement;
using Replay.Reporting;

namespace Replay.Tests.Capacity;

public sealed class KneeFinderTests
{
    private static SweepStep Step(double rate, double goodput, double p95, double serviceMeanMs = 100, double serviceP95Ms = 120) =>
        new(rate, 3, (long)(rate * 3), (long)(rate * 3), 0, goodput, goodput, 1,
            new Percentiles(1, p95 / 2, p95, p95, p95, p95, p95, p95 / 2),
            new Percentiles(1, serviceMeanMs, serviceP95Ms, serviceP95Ms, serviceP95Ms, serviceP95Ms, serviceP95Ms, serviceMeanMs),
            null, [true]);

    [Fact]
    public void Goodput_that_flattens_while_latency_climbs_is_past_the_knee_and_the_knee_is_the_first_step_on_the_plateau()
    {
        var options = new KneeFinder.Options(0.05, 2);
        List<SweepStep> steps = [Step(32, 32, 120), Step(40, 40, 125), Step(50, 50, 130), Step(62.5, 62, 140)];
        Assert.False(KneeFinder.PastKnee(steps, options));
        steps.Add(Step(78, 64, 700)); // +3%: not growing
        Assert.False(KneeFinder.PastKnee(steps, options));
        steps.Add(Step(97, 55, 1600)); // falling, latency up
        Assert.True(KneeFinder.PastKnee(steps, options));
        Assert.Equal(4, KneeFinder.Best(steps));
        Assert.Equal(3, KneeFinder.Knee(steps, options)); // 62 is within 5% of 64
    }

    [Fact]
    public void Flat_goodput_with_flat_latency_is_not_a_knee_but_a_collapse_is()
    {
        var options = new KneeFinder.Options(0.05, 2);
        List<SweepStep> flat = [Step(10, 10, 100), Step(20, 10.2, 100), Step(40, 10.3, 100)]; // e.g. a client-side limit
        Assert.False(KneeFinder.PastKnee(flat, options));
        List<SweepStep> collapse = [Step(10, 10, 100), Step(20, 20, 100), Step(40, 4, 100)];
        Assert.True(KneeFinder.PastKnee(collapse, options));
        Assert.Equal(-1, KneeFinder.Knee([Step(10, 0, 100)], options));
    }

    [Fact]
    public void The_profile_caps_in_flight_by_littles_law_and_queues_only_as_long_as_the_slo_allows()
    {
        // 62.5/s completed with a mean service time of 125 ms: 7.8 in flight, so 8. An e2e p95 bound of 1 s with a p95
        // service time of 130 ms leaves 870 ms of slack: wait at most 0.5 × 870 = 435 ms, i.e. 62.5 × 0.435 → 28 waiters.
        var knee = Step(62.5, 62.5, 140, serviceMeanMs: 125, serviceP95Ms: 130);
        var slo = Slo.TryParse("e2e_p95<1s", out _)!;
        var limits = ShapingProfile.Compute(knee, [slo]);
        Assert.Equal(8, limits.MaxInFlight);
        Assert.Equal(TimeSpan.FromMilliseconds(435), limits.QueueTimeout);
        Assert.Equal(28, limits.QueueLimit);
        Assert.Equal(69, limits.RatePerSecond);
        var json = ShapingProfile.Write(limits, "model-http", "openai", ["header"]);
        Assert.StartsWith("// header", json, StringComparison.Ordinal);
        Assert.Contains("\"QueueTimeout\": \"00:00:00.435\"", json, StringComparison.Ordinal);
    }
}

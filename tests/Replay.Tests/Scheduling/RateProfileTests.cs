using Replay.Scheduling;

namespace Replay.Tests.Scheduling;

public sealed class RateProfileTests
{
    [Fact]
    public void Constant_uniform_arrivals_are_exact_multiples_of_the_gap_with_no_drift()
    {
        var schedule = new ArrivalSchedule(RateProfile.Constant(1000, 1000), new ArrivalProcess(ArrivalKind.Uniform, 1, 1), long.MaxValue);
        long i = 0;
        while (schedule.TryNext(out var t))
        {
            if (i % 99_991 == 0 || i == 999_999)
            {
                Assert.Equal(i / 1000.0, t, 9);
            }

            i++;
        }

        Assert.Equal(1_000_000, i);
    }

    [Fact]
    public void A_ramp_places_the_nth_arrival_where_the_integral_of_the_rate_reaches_n()
    {
        var ramp = RateProfile.Ramp(100, 300, 10); // Λ(t) = 100t + 10t²
        Assert.Equal(2000, ramp.ExpectedCount, 6);
        foreach (var t in new[] { 0.5, 3.0, 7.25, 9.99 })
        {
            var u = (100 * t) + (10 * t * t);
            Assert.Equal(t, ramp.InverseCumulative(u), 9);
        }

        Assert.Equal(200, ramp.RateAt(5), 9);
        Assert.True(double.IsPositiveInfinity(ramp.InverseCumulative(2001)));
    }

    [Fact]
    public void A_falling_ramp_and_a_ramp_from_zero_invert_too()
    {
        var down = RateProfile.Ramp(300, 100, 10);
        var up = RateProfile.Ramp(0, 200, 10);
        foreach (var t in new[] { 0.1, 4.0, 9.5 })
        {
            Assert.Equal(t, down.InverseCumulative((300 * t) - (10 * t * t)), 9);
            Assert.Equal(t, up.InverseCumulative(10 * t * t), 9);
        }
    }

    [Fact]
    public void Steps_multiply_the_rate_each_step_and_stop_at_the_target()
    {
        var steps = RateProfile.Steps(100, 1500, 10, 1.5, 0, null);
        var rates = steps.Segments.Select(static s => s.From).ToList();
        Assert.Equal([100, 150, 225, 337.5, 506.25, 759.375, 1139.0625, 1500], rates);
        Assert.Equal(80, steps.Duration, 9);
        Assert.Equal(337.5, steps.RateAt(35), 9);
    }

    [Fact]
    public void A_spike_raises_the_rate_only_in_its_window()
    {
        var spike = RateProfile.Spike(50, 500, 2, 1, 5);
        Assert.Equal(50, spike.RateAt(1.9), 9);
        Assert.Equal(500, spike.RateAt(2.5), 9);
        Assert.Equal(50, spike.RateAt(3.1), 9);
        Assert.Equal((50 * 4) + 500, spike.ExpectedCount, 9);
    }

    [Theory]
    [InlineData("Poisson", 1.0)]
    [InlineData("Gamma", 0.25)]
    [InlineData("Gamma", 4.0)]
    public void Random_arrivals_have_mean_gap_one_and_the_variance_of_their_process(string kindName, double burstiness)
    {
        var kind = Enum.Parse<ArrivalKind>(kindName);
        var process = new ArrivalProcess(kind, burstiness, 42);
        const int N = 200_000;
        double sum = 0, sumSquares = 0;
        for (var i = 0; i < N; i++)
        {
            var gap = process.NextGap();
            sum += gap;
            sumSquares += gap * gap;
        }

        var mean = sum / N;
        var variance = (sumSquares / N) - (mean * mean);
        Assert.InRange(mean, 0.98, 1.02);
        var expectedCv2 = 1 / burstiness; // Poisson: 1; gamma(k): 1/k
        Assert.InRange(variance / (mean * mean), expectedCv2 * 0.93, expectedCv2 * 1.07);
    }

    [Fact]
    public void The_same_seed_gives_the_same_schedule()
    {
        static List<double> Draw(int seed)
        {
            var s = new ArrivalSchedule(RateProfile.Constant(100, 5), new ArrivalProcess(ArrivalKind.Gamma, 0.5, seed), long.MaxValue);
            var list = new List<double>();
            while (s.TryNext(out var t))
            {
                list.Add(t);
            }

            return list;
        }

        Assert.Equal(Draw(7), Draw(7));
        Assert.NotEqual(Draw(7), Draw(8));
    }

    [Fact]
    public void The_limit_caps_the_number_of_arrivals()
    {
        var s = new ArrivalSchedule(RateProfile.Constant(100, 5), new ArrivalProcess(ArrivalKind.Uniform, 1, 1), 7);
        var n = 0;
        while (s.TryNext(out _))
        {
            n++;
        }

        Assert.Equal(7, n);
    }
}

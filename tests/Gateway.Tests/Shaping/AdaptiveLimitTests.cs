using Gateway.Shaping;
using Gateway.Shaping.Admission;

namespace Gateway.Tests.Shaping;

/// <summary>The adaptive in-flight limit follows the backend's latency (Gradient2).</summary>
public sealed class AdaptiveLimitTests
{
    private static AdaptiveOptions Options() => new() { Enabled = true, MinLimit = 2, MaxLimit = 64, Tolerance = 1.5, Smoothing = 0.2, LongWindow = 100 };

    [Fact]
    public void A_fast_busy_backend_lets_the_limit_grow_to_its_maximum()
    {
        var limit = new AdaptiveLimit(Options(), initial: 8);
        for (var i = 0; i < 500; i++)
        {
            limit.Sample(rttMs: 100, inFlight: (int)limit.Limit);
        }

        Assert.Equal(64, limit.Limit, precision: 3);
    }

    [Fact]
    public void Latency_rising_above_the_long_term_average_shrinks_the_limit_and_recovery_grows_it_back()
    {
        var limit = new AdaptiveLimit(Options(), initial: 32);
        for (var i = 0; i < 200; i++)
        {
            limit.Sample(100, (int)limit.Limit);
        }

        var before = limit.Limit;
        for (var i = 0; i < 20; i++)
        {
            limit.Sample(1000, (int)limit.Limit); // the backend queues: latency x10
        }

        var shrunk = limit.Limit;
        Assert.True(shrunk < before / 2, $"limit went from {before} to {shrunk}");
        Assert.True(shrunk >= 2);
        for (var i = 0; i < 300; i++)
        {
            limit.Sample(100, (int)limit.Limit); // the backend recovers
        }

        Assert.True(limit.Limit > shrunk * 2, $"limit stayed at {limit.Limit} after recovery (was {shrunk})");
    }

    [Fact]
    public void An_idle_backend_does_not_raise_the_limit()
    {
        var limit = new AdaptiveLimit(Options(), initial: 16);
        for (var i = 0; i < 500; i++)
        {
            limit.Sample(100, inFlight: 1); // far below half the limit: the backend is not what limits
        }

        Assert.Equal(16, limit.Limit, precision: 3);
    }

    [Fact]
    public async Task The_admission_controller_adapts_its_limit_to_a_slowing_backend()
    {
        var settings = new AdmissionSettings(new AdmissionOptions { MaxInFlight = 16, QueueLimit = 100, Adaptive = Options() });
        var controller = new AdmissionController("c", settings, TimeProvider.System);
        Assert.Equal(16, controller.Limit);

        // Feed samples through leases: fast first, then slow.
        async Task Run(int count, int delayMs)
        {
            for (var i = 0; i < count; i++)
            {
                var r = await controller.EnterAsync("k", 1, CancellationToken.None);
                await Task.Delay(delayMs);
                r.Lease!.MarkFirstByte();
                r.Lease.Dispose();
            }
        }

        await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => Run(10, 2)));
        var fast = controller.Limit;
        await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => Run(5, 60)));
        Assert.True(controller.Limit < fast, $"limit stayed at {controller.Limit} (was {fast}) although latency rose 30x");
    }
}

using System.Net;
using System.Text.Json.Nodes;
using Gateway.Shaping;
using Gateway.Shaping.Admission;
using Microsoft.Extensions.DependencyInjection;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Shaping;

/// <summary>The adaptive in-flight limit follows the backend's latency against its no-load latency.</summary>
public sealed class AdaptiveLimitTests
{
    private static AdaptiveOptions Options() => new()
    {
        Enabled = true, MinLimit = 2, MaxLimit = 64, Tolerance = 1.5, Smoothing = 0.2,
        SampleWindow = TimeSpan.FromMilliseconds(100), MinRttInterval = TimeSpan.FromSeconds(60), MinRttSamples = 10,
    };

    /// <summary>Feeds <paramref name="count"/> samples of <paramref name="rtt"/> ms, 10 ms apart, starting at <paramref name="now"/>.</summary>
    private static double Feed(AdaptiveLimit limit, double now, int count, double rtt, Func<double, int>? inFlight = null)
    {
        for (var i = 0; i < count; i++)
        {
            now += 10;
            limit.Sample(rtt, inFlight?.Invoke(limit.Limit) ?? (int)limit.Limit, now, admittedCalibrating: limit.Calibrating, epoch: limit.Epoch);
        }

        return now;
    }

    [Fact]
    public void The_no_load_latency_is_measured_at_the_minimum_limit_first()
    {
        var limit = new AdaptiveLimit(Options(), initial: 16);
        Assert.True(limit.Calibrating);
        Assert.Equal(2, limit.Limit);

        var now = Feed(limit, 0, 9, 100);
        Assert.True(limit.Calibrating);
        Feed(limit, now, 1, 100);

        Assert.False(limit.Calibrating);
        Assert.Equal(100, limit.MinRttMs);
        Assert.Equal(16, limit.Limit);
    }

    [Fact]
    public void A_backend_within_its_tolerance_lets_the_limit_grow_to_its_maximum()
    {
        var limit = new AdaptiveLimit(Options(), initial: 8);
        var now = Feed(limit, 0, 10, 100);
        Feed(limit, now, 2000, 130); // a fuller batch: 30% slower, within the 1.5x tolerance

        Assert.Equal(64, limit.Limit, precision: 3);
    }

    [Fact]
    public void A_backend_that_keeps_queueing_keeps_the_limit_down_and_recovery_lets_it_grow()
    {
        var limit = new AdaptiveLimit(Options(), initial: 32);
        var now = Feed(limit, 0, 10, 100);
        now = Feed(limit, now, 500, 400); // the backend queues: latency 4x its no-load latency, for a long time

        var down = limit.Limit;
        Assert.True(down <= 6, $"limit {down} under a persistent 4x latency"); // fixed point: L = L/2 + √L, L = 4
        Assert.True(down >= 2);

        Feed(limit, now, 500, 110); // the queue drains
        Assert.True(limit.Limit > down * 4, $"limit stayed at {limit.Limit} after recovery (was {down})");
    }

    [Fact]
    public void An_idle_backend_does_not_raise_the_limit()
    {
        var limit = new AdaptiveLimit(Options(), initial: 16);
        var now = Feed(limit, 0, 10, 100);
        Feed(limit, now, 1000, 100, inFlight: _ => 1); // far below half the limit: the backend is not what limits

        Assert.Equal(16, limit.Limit, precision: 3);
    }

    [Fact]
    public void The_no_load_latency_is_measured_again_and_old_requests_do_not_count()
    {
        var options = Options();
        options.MinRttInterval = TimeSpan.FromSeconds(5);
        var limit = new AdaptiveLimit(options, initial: 16);
        var now = Feed(limit, 0, 10, 100);
        var samples = 0;
        while (!limit.Calibrating && samples++ < 1000)
        {
            now += 10;
            limit.Sample(120, 16, now, admittedCalibrating: false, epoch: 0); // requests admitted at the normal limit
        }

        Assert.InRange(samples, 450, 550); // a new calibration about 5 s later
        Assert.Equal(1, limit.Epoch);
        Assert.Equal(2, limit.Limit);

        for (var i = 0; i < 20; i++)
        {
            now += 10;
            limit.Sample(500, 16, now, admittedCalibrating: false, epoch: 0); // admitted before: ignored
        }

        Assert.True(limit.Calibrating);
        Feed(limit, now, 10, 90);
        Assert.Equal(90, limit.MinRttMs);
    }

    [Fact]
    public async Task With_an_adaptive_limit_the_model_servers_queue_stays_short_under_overload()
    {
        var shaping = new JsonObject
        {
            ["Admission"] = new JsonObject
            {
                ["model-http"] = new JsonObject
                {
                    ["MaxInFlight"] = 8, ["QueueLimit"] = 64, ["QueueTimeout"] = "00:00:02",
                    ["Adaptive"] = new JsonObject { ["Enabled"] = true, ["MinLimit"] = 2, ["MaxLimit"] = 64, ["MinRttSamples"] = 5, ["SampleWindow"] = "00:00:00.200" },
                },
            },
        };
        var options = new GatewayHarness.Options { Edit = With(shaping) };
        options.Sim["Sim:Slots"] = "8";
        options.Sim["Sim:Queue"] = "100000";
        options.Sim["Sim:PerTokenMs"] = "5";
        await using var h = await GatewayHarness.StartAsync(options);
        using var client = new HttpClient { BaseAddress = h.Http, Timeout = TimeSpan.FromSeconds(60) };
        var controller = h.Gateway.Services.GetRequiredService<ShapingRuntime>().Current.Clusters["model-http"].Controller;

        // 32 clients against 8 slots, for 6 s: a fixed limit of 64 would keep about 24 requests in the model server's queue.
        var counts = await HammerAsync(client, TimeSpan.FromSeconds(6), () => new HttpRequestMessage(HttpMethod.Post, "/v1/generate") { Content = Generate(maxTokens: 10) }, concurrency: 32);

        Assert.True(counts.GetValueOrDefault(HttpStatusCode.OK) > 50, string.Join(", ", counts));
        Assert.True(h.Sim.Stats.QueueDepthMax <= 8, $"the model server queued {h.Sim.Stats.QueueDepthMax} (limit now {controller.Limit})");
        Assert.InRange(controller.Limit, 2, 20);
    }
}

using Gateway.Admin.Stats;
using Gateway.Configuration;
using Microsoft.Extensions.Configuration;
using TestSupport;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Tests.Admin;

/// <summary>
/// The dashboard's history ring on its own, with a fake clock: writers on several threads across many second
/// boundaries lose nothing (the classic reset race of a ring of counters: a bucket cleared while another thread adds to
/// it), a quiet second has no bucket (no traffic is not 0 ms; carbon-charts#463, rickshaw#515 plotted gaps as 0), the
/// histogram's percentiles keep their stated precision, and the per-key tables are bounded.
/// </summary>
public sealed class TrafficHistoryTests
{
    private static ExchangeSample Sample(string? tenant = "t", int status = 200, double seconds = 0.010, string listener = "http", string? refusedBy = null) =>
        new(listener, "openai", tenant, status, seconds, null, refusedBy, TimeSpan.FromMilliseconds(2), 3, 4);

    [Fact]
    public async Task Concurrent_writers_across_second_boundaries_lose_no_exchange()
    {
        var time = new FakeTimeProvider();
        using var history = new TrafficHistory(time, 3600, shaping: null);
        const int Threads = 4, PerThread = 50_000;
        using var done = new CancellationTokenSource();
        var ticker = Task.Run(() =>
        {
            // Seconds pass while the writers write (at most 3000 of them, inside the ring's hour).
            for (var s = 0; s < 3000 && !done.IsCancellationRequested; s++)
            {
                time.Advance(TimeSpan.FromSeconds(1));
                Thread.SpinWait(5_000);
            }
        });
        var writers = Enumerable.Range(0, Threads).Select(i => Task.Run(() =>
        {
            for (var n = 0; n < PerThread; n++)
            {
                history.Record(Sample(tenant: i % 2 == 0 ? "even" : "odd", status: n % 10 == 0 ? 429 : 200, refusedBy: n % 10 == 0 ? "per-key" : null));
            }
        })).ToArray();
        await Task.WhenAll(writers);
        await done.CancelAsync();
        await ticker;

        var now = history.Now;
        Assert.True(now > 5, $"the clock moved only {now} s while writing: the test did not cross second boundaries");
        Assert.True(now < 3600, "the ring wrapped; the sum below would not hold");
        long inRing = 0, refusedInRing = 0, latencies = 0;
        for (var s = 0; s <= now; s++)
        {
            if (history.Ring.Get(s) is { } b)
            {
                inRing += b.Requests;
                refusedInRing += b.RefusedBy?["per-key"].Value ?? 0;
                latencies += b.Latency.Count;
            }
        }

        Assert.Equal(Threads * PerThread, history.Total.Requests);
        Assert.Equal(Threads * PerThread, inRing + history.Late);
        Assert.Equal(Threads * PerThread / 10, refusedInRing);
        Assert.Equal(Threads * PerThread / 2, history.Tenants["even"].Total.Requests);
        Assert.Equal(Threads * PerThread * 3L, history.Total.TokensIn);
        Assert.Equal(inRing, latencies); // one latency per exchange, none lost to a concurrent bucket swap
    }

    [Fact]
    public void A_quiet_second_has_no_bucket_and_the_admin_listener_is_not_traffic()
    {
        var time = new FakeTimeProvider();
        using var history = new TrafficHistory(time, 60, shaping: null);
        history.Record(Sample());
        time.Advance(TimeSpan.FromSeconds(3));
        history.Record(Sample());
        history.Record(Sample(listener: "admin")); // the dashboard's own polling

        Assert.NotNull(history.Ring.Get(0));
        Assert.Null(history.Ring.Get(1));
        Assert.Null(history.Ring.Get(2));
        Assert.Equal(1, history.Ring.Get(3)!.Requests);
        Assert.Equal(2, history.Total.Requests);

        // A ring of 60 s forgets what is older than that: second 0's slot now holds second 60.
        time.Advance(TimeSpan.FromSeconds(57));
        history.Record(Sample());
        Assert.Null(history.Ring.Get(0));
        Assert.Equal(1, history.Ring.Get(60)!.Requests);
        Assert.Equal(3, history.Total.Requests);
    }

    [Fact]
    public void Percentiles_are_within_an_eighth_of_the_value_recorded()
    {
        var h = new LogHistogram();
        Assert.Null(h.Percentile(50));
        for (var ms = 1; ms <= 1000; ms++)
        {
            h.Record(ms / 1000.0);
        }

        Assert.InRange(h.Percentile(50)!.Value, 500 * 0.875, 500 * 1.125);
        Assert.InRange(h.Percentile(99)!.Value, 990 * 0.875, 990 * 1.125);
        Assert.InRange(h.Percentile(100)!.Value, 1000 * 0.875, 1000 * 1.125);

        var edges = new LogHistogram();
        edges.Record(-1);               // a clock step backwards: the smallest bucket, not an exception
        edges.Record(double.NaN);
        edges.Record(10_000);           // 2.8 hours: the largest bucket
        Assert.Equal(3, edges.Count);
        Assert.True(edges.Percentile(100) > 60 * 60 * 1000.0);
        Assert.True(edges.Percentile(1) < 0.03);
    }

    [Fact]
    public void Tenants_past_the_cap_count_as_other()
    {
        var time = new FakeTimeProvider();
        using var history = new TrafficHistory(time, 60, shaping: null);
        for (var i = 0; i < TrafficHistory.MaxKeys + 5; i++)
        {
            history.Record(Sample(tenant: "tenant-" + i));
        }

        history.Record(Sample(tenant: null));
        Assert.True(history.Tenants.Count <= TrafficHistory.MaxKeys + 1);
        Assert.True(history.Tenants["(other)"].Total.Requests >= 5);
        Assert.Equal(TrafficHistory.MaxKeys + 6, history.Total.Requests);
    }

    [Theory]
    [InlineData("59")]
    [InlineData("86401")]
    [InlineData("an hour")]
    public void A_history_length_out_of_range_is_a_start_up_error_naming_the_key(string value)
    {
        var configuration = new ConfigurationBuilder()
            .AddJsonFile(RepoPaths.Combine("appsettings.json"))
            .AddInMemoryCollection(new Dictionary<string, string?> { ["Gateway:Admin:HistorySeconds"] = value })
            .Build();
        var error = Assert.Single(ConfigurationValidator.Validate(configuration).Errors);
        Assert.Contains("Gateway:Admin:HistorySeconds", error, StringComparison.Ordinal);
        Assert.Contains(value, error, StringComparison.Ordinal);
    }
}

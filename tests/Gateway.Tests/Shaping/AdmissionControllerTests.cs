using Gateway.Shaping;
using Gateway.Shaping.Admission;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Tests.Shaping;

/// <summary>The admission controller's own decisions, on a controlled clock.</summary>
public sealed class AdmissionControllerTests
{
    [Fact]
    public async Task A_request_that_would_wait_past_the_queue_timeout_is_refused_at_once_not_after_waiting()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        var controller = new AdmissionController("gpu", new AdmissionSettings(new AdmissionOptions
        {
            MaxInFlight = 1, QueueLimit = 100, QueueTimeout = TimeSpan.FromSeconds(1),
        }), time);

        // Serve 4 requests in the last second: the queue moves at about 4 per second.
        for (var i = 0; i < 4; i++)
        {
            var served = await controller.EnterAsync("k", 1, CancellationToken.None);
            time.Advance(TimeSpan.FromMilliseconds(240));
            served.Lease!.Dispose();
        }

        var holder = await controller.EnterAsync("k", 1, CancellationToken.None);
        Assert.NotNull(holder.Lease);

        // At about 4.2 per second (4 departures in the last 0.96 s), 4 waiters start within the 1 s timeout; a 5th would not.
        var queued = Enumerable.Range(0, 4).Select(_ => controller.EnterAsync("k", 1, CancellationToken.None)).ToList();
        Assert.All(queued, q => Assert.False(q.IsCompleted));
        Assert.Equal(4, controller.Queued);
        var late = controller.EnterAsync("k", 1, CancellationToken.None);
        Assert.True(late.IsCompleted, "a request that cannot start within the queue timeout waited anyway");
        Assert.Equal("queue_timeout", (await late).Reason);

        // A more urgent class is not behind the queued normal requests: it still queues.
        var urgent = controller.EnterAsync("k", 0, CancellationToken.None);
        Assert.False(urgent.IsCompleted);

        holder.Lease!.Dispose();
        var first = await urgent;
        Assert.NotNull(first.Lease);
        first.Lease!.Dispose();
        foreach (var q in queued)
        {
            (await q).Lease?.Dispose();
        }
    }

    [Fact]
    public async Task Without_a_known_departure_rate_a_request_queues_and_times_out_after_the_queue_timeout()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        var controller = new AdmissionController("gpu", new AdmissionSettings(new AdmissionOptions
        {
            MaxInFlight = 1, QueueLimit = 100, QueueTimeout = TimeSpan.FromSeconds(1),
        }), time);
        var holder = await controller.EnterAsync("k", 1, CancellationToken.None);

        var waiting = controller.EnterAsync("k", 1, CancellationToken.None).AsTask();
        Assert.False(waiting.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(1.1));
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("queue_timeout", result.Reason);
        holder.Lease!.Dispose();
    }
}

using Replay.Clients;

namespace Replay.Tests.Clients;

public sealed class ConnectionBudgetTests
{
    [Theory]
    [InlineData(20_000, 20_000, 200, 17_300)]   // the demo machine: ulimit -n 20000 would have been used up
    [InlineData(20_000, 1_048_576, 200, 20_000)] // a generous limit: --connections stands
    [InlineData(20_000, 1024, 100, 796)]         // 1024 - 100 open - 128 reserve
    [InlineData(20_000, 100, 90, 8)]             // never below 8
    [InlineData(4, 1024, 100, 4)]                // a small request is kept
    [InlineData(500, -1, 100, 500)]              // unknown limit (not Linux)
    public void The_budget_leaves_the_reserve_and_the_open_descriptors_free(int requested, long openFileLimit, int openNow, int expected)
    {
        Assert.Equal(expected, ConnectionBudget.Fit(requested, openFileLimit, openNow));
    }

    [Fact]
    public void This_process_has_a_readable_open_file_limit_on_linux()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        var limit = ConnectionBudget.ReadOpenFileLimit();
        Assert.True(limit >= 64, $"RLIMIT_NOFILE read as {limit}");
        Assert.InRange(ConnectionBudget.CountOpenDescriptors(), 3, limit);
        Assert.True(ConnectionBudget.ForProcess(int.MaxValue).Limit <= limit - ConnectionBudget.Reserve(limit));
    }

    [Fact(Timeout = 10_000)]
    public async Task Waiters_are_served_in_order_and_a_wait_past_the_timeout_fails()
    {
        using var budget = new ConnectionBudget(1);
        Assert.True(budget.TryAcquire());
        Assert.False(budget.TryAcquire());
        Assert.False(await budget.AcquireAsync(TimeSpan.FromMilliseconds(50), CancellationToken.None));

        var first = budget.AcquireAsync(TimeSpan.FromSeconds(5), CancellationToken.None).AsTask();
        var second = budget.AcquireAsync(TimeSpan.FromSeconds(5), CancellationToken.None).AsTask();
        budget.Release();
        Assert.True(await first);
        Assert.False(second.IsCompleted);
        budget.Release();
        Assert.True(await second);
        Assert.Equal(3, budget.Waits);
        Assert.Equal(1, budget.PeakInUse);
    }
}

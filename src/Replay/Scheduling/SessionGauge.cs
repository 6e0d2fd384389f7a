namespace Replay.Scheduling;

/// <summary>Sessions in flight across several runners of one process (a worker's concurrent slices), and the most at once.</summary>
internal sealed class SessionGauge
{
    private int _current;
    private int _peak;

    /// <summary>Most sessions in flight at once.</summary>
    public int Peak => Volatile.Read(ref _peak);

    /// <summary>A session started.</summary>
    public void Increment()
    {
        var now = Interlocked.Increment(ref _current);
        var peak = Volatile.Read(ref _peak);
        while (now > peak)
        {
            var seen = Interlocked.CompareExchange(ref _peak, now, peak);
            if (seen == peak)
            {
                return;
            }

            peak = seen;
        }
    }

    /// <summary>A session ended.</summary>
    public void Decrement() => Interlocked.Decrement(ref _current);
}

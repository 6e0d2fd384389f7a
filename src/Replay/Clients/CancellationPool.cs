using System.Collections.Concurrent;

namespace Replay.Clients;

/// <summary>
/// Per-request timeout sources, reused (<see cref="CancellationTokenSource.TryReset"/>) so a request does not
/// allocate one. Bounded: beyond <see cref="MaxPooled"/> returned sources are disposed.
/// </summary>
internal sealed class CancellationPool
{
    /// <summary>Most sources kept.</summary>
    public const int MaxPooled = 4096;

    private readonly ConcurrentQueue<CancellationTokenSource> _pool = new();
    private int _count;

    /// <summary>A source that cancels itself after <paramref name="timeout"/>.</summary>
    public CancellationTokenSource Rent(TimeSpan timeout)
    {
        if (_pool.TryDequeue(out var cts))
        {
            Interlocked.Decrement(ref _count);
        }
        else
        {
            cts = new CancellationTokenSource();
        }

        cts.CancelAfter(timeout);
        return cts;
    }

    /// <summary>Gives a source back (disposed instead when it fired or the pool is full).</summary>
    public void Return(CancellationTokenSource cts)
    {
        if (cts.TryReset())
        {
            if (Interlocked.Increment(ref _count) <= MaxPooled)
            {
                _pool.Enqueue(cts);
                return;
            }

            Interlocked.Decrement(ref _count);
        }

        cts.Dispose();
    }
}

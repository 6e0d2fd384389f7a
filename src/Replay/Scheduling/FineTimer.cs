using System.Diagnostics;

namespace Replay.Scheduling;

/// <summary>
/// Async waits that never end before their due time and end within tens of microseconds after it, for a session's
/// later requests and WebSocket frames (the dispatcher releases first requests itself, with <see cref="PreciseSleep"/>).
/// </summary>
/// <remarks>
/// <para><c>Task.Delay</c> alone cannot do this: .NET's timer queue runs on <c>Environment.TickCount64</c>, which on
/// Linux is <c>CLOCK_MONOTONIC_COARSE</c> (a jiffy, 4 ms at HZ=250), so a delay computed from <see cref="Stopwatch"/>
/// timestamps can fire several milliseconds early (a request sent before its intended time, whose latency then comes
/// out below its service time), or as late. A wait therefore sleeps on the timer until <see cref="Margin"/> before its
/// due time, then is handed to one thread that sleeps with an absolute <c>clock_nanosleep</c> and completes each wait
/// when the clock has passed it.</para>
/// <para>That thread holds only waits due within the margin, and wakes at least every <see cref="Slice"/> while it
/// holds any, so that a wait added after it went to sleep is not late by more than that; with none it blocks.</para>
/// <para>Without <see cref="PreciseSleep"/> (another OS, or a fake clock in tests) a wait is a loop of
/// <c>Task.Delay</c> on the given <see cref="TimeProvider"/> that re-reads the clock, so it is still never early.</para>
/// </remarks>
internal sealed class FineTimer : IDisposable
{
    /// <summary>How long before its due time a wait leaves the coarse timer for the precise thread.</summary>
    internal static readonly TimeSpan Margin = TimeSpan.FromMilliseconds(8);

    /// <summary>Longest sleep of the precise thread while it holds a wait.</summary>
    internal static readonly TimeSpan Slice = TimeSpan.FromMicroseconds(250);

    private readonly TimeProvider _time;
    private readonly bool _precise;
    private readonly PriorityQueue<TaskCompletionSource, long> _due = new();
    private readonly object _lock = new();
    private readonly long _marginTicks;
    private readonly long _sliceTicks;
    private Thread? _thread;
    private bool _disposed;

    /// <summary>Creates a timer on <paramref name="time"/>; precise only on the system clock where <see cref="PreciseSleep.Supported"/>.</summary>
    public FineTimer(TimeProvider time)
    {
        _time = time;
        _precise = ReferenceEquals(time, TimeProvider.System) && PreciseSleep.Supported;
        _marginTicks = (long)(Margin.TotalSeconds * time.TimestampFrequency);
        _sliceTicks = (long)(Slice.TotalSeconds * time.TimestampFrequency);
    }

    /// <summary>Completes once the clock (<see cref="TimeProvider.GetTimestamp"/>) reads <paramref name="due"/> or later.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired first.</exception>
    public async ValueTask WaitUntilAsync(long due, CancellationToken cancellationToken)
    {
        while (true)
        {
            var remaining = due - _time.GetTimestamp();
            if (remaining <= 0)
            {
                return;
            }

            if (_precise && remaining <= _marginTicks)
            {
                await WaitPreciseAsync(due, cancellationToken).ConfigureAwait(false);
                return;
            }

            var wait = _precise ? remaining - _marginTicks : remaining;

            // Rounded up to whole timer ticks (100 ns), so a wait is never shortened by the conversion.
            var ticks = Math.Max(1, (long)Math.Ceiling(wait * (double)TimeSpan.TicksPerSecond / _time.TimestampFrequency));
            await Task.Delay(TimeSpan.FromTicks(ticks), _time, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        TaskCompletionSource[] pending;
        lock (_lock)
        {
            _disposed = true;
            pending = new TaskCompletionSource[_due.Count];
            for (var i = 0; i < pending.Length; i++)
            {
                pending[i] = _due.Dequeue();
            }

            Monitor.PulseAll(_lock);
        }

        foreach (var waiter in pending)
        {
            waiter.TrySetCanceled();
        }
    }

    private async ValueTask WaitPreciseAsync(long due, CancellationToken cancellationToken)
    {
        var waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _due.Enqueue(waiter, due);
            if (_thread is null)
            {
                _thread = new Thread(Run) { IsBackground = true, Name = "replay-fine-timer", Priority = ThreadPriority.AboveNormal };
                _thread.Start();
            }

            Monitor.Pulse(_lock);
        }

        await waiter.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private void Run()
    {
        var ready = new List<TaskCompletionSource>();
        while (true)
        {
            long sleepUntil;
            lock (_lock)
            {
                while (_due.Count == 0 && !_disposed)
                {
                    Monitor.Wait(_lock);
                }

                if (_disposed)
                {
                    return;
                }

                var now = _time.GetTimestamp();
                while (_due.TryPeek(out var waiter, out var due) && due <= now)
                {
                    _due.Dequeue();
                    ready.Add(waiter);
                }

                sleepUntil = _due.TryPeek(out _, out var next) ? Math.Min(next, now + _sliceTicks) : 0;
            }

            foreach (var waiter in ready)
            {
                waiter.TrySetResult();
            }

            ready.Clear();
            if (sleepUntil > 0)
            {
                PreciseSleep.SleepUntil(sleepUntil);
            }
        }
    }
}

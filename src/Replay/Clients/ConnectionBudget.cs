using System.Runtime.InteropServices;

namespace Replay.Clients;

/// <summary>
/// Bounds the sockets a run holds open, so the process never runs out of file descriptors: one unit per HTTP/1.1
/// request in flight (HTTP/1.1 carries one exchange per connection) and per open WebSocket connection.
/// </summary>
/// <remarks>
/// <para>Why: an open-model run against a target that queues keeps every late request outstanding, and HTTP/1.1 needs
/// a connection for each. Without a bound the connection count follows the backlog (20,000 and more at 3x a
/// model server's capacity for 20 s) until <c>socket()</c> fails with EMFILE. The runtime needs descriptors too
/// (assembly loads, <c>/proc/meminfo</c> for the GC, pipes, the crash dumper), and when it cannot get one it dies:
/// "Out of memory." (SIGABRT), SIGSEGV with no dump, or an exception from <c>Process</c>.</para>
/// <para>The limit is <c>--connections</c>, lowered to what the open-file limit (<c>RLIMIT_NOFILE</c>) leaves
/// after the descriptors open now and a reserve (<see cref="Reserve"/>). A request that finds no free unit waits for
/// one (FIFO) and that wait is charged as schedule lag, since the generator could not send on time; a request that
/// waits longer than <c>--timeout</c> fails as a timeout without being sent.</para>
/// <para>HTTP/2 and gRPC multiplex up to the server's stream limit (100 by default in Kestrel) on each connection,
/// so their requests take no unit; the handler's <c>MaxConnectionsPerServer</c> is set to the same limit.</para>
/// </remarks>
internal sealed partial class ConnectionBudget : IDisposable
{
    private const int RlimitNofile = 7; // Linux (x86-64, arm64)
    private readonly SemaphoreSlim _free;
    private long _waits;
    private int _inUse;
    private int _peakInUse;

    /// <summary>Creates a budget of <paramref name="limit"/> sockets.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="limit"/> is not positive.</exception>
    public ConnectionBudget(int limit, long openFileLimit = -1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        Limit = limit;
        OpenFileLimit = openFileLimit;
        _free = new SemaphoreSlim(limit, limit);
    }

    /// <summary>Most sockets held at once.</summary>
    public int Limit { get; }

    /// <summary>The process's open-file limit when the budget was made (-1 when unknown).</summary>
    public long OpenFileLimit { get; }

    /// <summary>Requests (or WebSocket connections) that found no free unit and waited.</summary>
    public long Waits => Interlocked.Read(ref _waits);

    /// <summary>Most units held at once.</summary>
    public int PeakInUse => Volatile.Read(ref _peakInUse);

    /// <summary>Descriptors kept free for the runtime and the tool: max(128, limit / 8).</summary>
    public static long Reserve(long openFileLimit) => Math.Max(128, openFileLimit / 8);

    /// <summary>
    /// The socket budget for <paramref name="requested"/> connections: the request, or less when the open-file limit
    /// minus the descriptors open now minus <see cref="Reserve"/> is smaller (at least 8).
    /// </summary>
    /// <param name="requested"><c>--connections</c>.</param>
    /// <param name="openFileLimit">RLIMIT_NOFILE (-1 unknown: the request stands).</param>
    /// <param name="openNow">Descriptors open now.</param>
    public static int Fit(int requested, long openFileLimit, int openNow)
    {
        if (openFileLimit <= 0)
        {
            return requested;
        }

        var room = openFileLimit - openNow - Reserve(openFileLimit);
        return (int)Math.Min(requested, Math.Max(8, room));
    }

    /// <summary>A budget for this process: <paramref name="requested"/> fitted to its open-file limit.</summary>
    public static ConnectionBudget ForProcess(int requested)
    {
        var limit = ReadOpenFileLimit();
        return new ConnectionBudget(Fit(requested, limit, CountOpenDescriptors()), limit);
    }

    /// <summary>The soft RLIMIT_NOFILE of this process (the runtime raises it to the hard limit at start), or -1 off Linux.</summary>
    public static long ReadOpenFileLimit()
    {
        if (!OperatingSystem.IsLinux())
        {
            return -1;
        }

        try
        {
            return GetRlimit(RlimitNofile, out var limit) == 0 && limit.Current < long.MaxValue ? (long)limit.Current : -1;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            return -1;
        }
    }

    /// <summary>Descriptors open in this process (entries of /proc/self/fd), or 0 when that cannot be read.</summary>
    public static int CountOpenDescriptors()
    {
        try
        {
            return Directory.Exists("/proc/self/fd") ? Directory.GetFileSystemEntries("/proc/self/fd").Length : 0;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
    }

    /// <summary>Takes a unit if one is free now (no wait, no allocation).</summary>
    public bool TryAcquire()
    {
        if (!_free.Wait(0))
        {
            return false;
        }

        TrackInUse();
        return true;
    }

    /// <summary>Waits (FIFO) for a unit, at most <paramref name="timeout"/>; false when none freed up in time.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired.</exception>
    public async ValueTask<bool> AcquireAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (TryAcquire())
        {
            return true;
        }

        Interlocked.Increment(ref _waits);
        if (!await _free.WaitAsync(timeout, cancellationToken).ConfigureAwait(false))
        {
            return false;
        }

        TrackInUse();
        return true;
    }

    /// <summary>Gives a unit back.</summary>
    public void Release()
    {
        Interlocked.Decrement(ref _inUse);
        _free.Release();
    }

    /// <inheritdoc/>
    public void Dispose() => _free.Dispose();

    private void TrackInUse()
    {
        var inUse = Interlocked.Increment(ref _inUse);
        var peak = Volatile.Read(ref _peakInUse);
        while (inUse > peak)
        {
            var seen = Interlocked.CompareExchange(ref _peakInUse, inUse, peak);
            if (seen == peak)
            {
                return;
            }

            peak = seen;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit
    {
        public ulong Current;
        public ulong Maximum;
    }

    [LibraryImport("libc", EntryPoint = "getrlimit")]
    private static partial int GetRlimit(int resource, out RLimit limit);
}

using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Gateway.Tenants;

/// <summary>
/// Failed authentication attempts per client address in fixed windows (<c>Gateway:Auth:FailedAttemptsLimit</c> per
/// <c>FailedAttemptsWindow</c>): once an address has failed that many times in its window, its requests are refused
/// (429 <c>too_many_failed_attempts</c> with <c>Retry-After</c>, the rest of the window) before any credential is
/// checked, so a guesser learns nothing more until the window ends. IPv6 addresses count by their /64 prefix (one
/// host usually holds the whole prefix). At most <see cref="MaxAddresses"/> addresses are held; windows past their end
/// are forgotten every window; a failure from a new address beyond that cap is not tracked (counted by the caller).
/// Thread-safe.
/// </summary>
internal sealed class FailedAttempts
{
    /// <summary>The most client addresses tracked at once.</summary>
    public const int MaxAddresses = 100_000;

    private readonly ConcurrentDictionary<IPAddress, Window> _windows = new();
    private readonly TimeProvider _time;
    private long _lastSweep;

    public FailedAttempts(TimeProvider time)
    {
        _time = time;
        _lastSweep = time.GetTimestamp();
    }

    /// <summary>Addresses tracked now.</summary>
    public int Count => _windows.Count;

    /// <summary>Whether <paramref name="address"/> is over <paramref name="limit"/> failures in its current window.</summary>
    /// <param name="address">The client's address (null: never blocked).</param>
    /// <param name="limit">Failures allowed per window.</param>
    /// <param name="window">The window's length.</param>
    /// <param name="retryAfter">When blocked, the rest of the window.</param>
    public bool IsBlocked(IPAddress? address, int limit, TimeSpan window, out TimeSpan retryAfter)
    {
        retryAfter = TimeSpan.Zero;
        if (address is null || _windows.IsEmpty || !_windows.TryGetValue(Normalize(address), out var w))
        {
            return false;
        }

        lock (w)
        {
            var elapsed = _time.GetElapsedTime(w.Start);
            if (elapsed >= window || w.Count < limit)
            {
                return false;
            }

            retryAfter = window - elapsed;
            return true;
        }
    }

    /// <summary>Counts a failure of <paramref name="address"/>.</summary>
    /// <returns>False when the address could not be tracked (<see cref="MaxAddresses"/> reached).</returns>
    public bool Fail(IPAddress? address, TimeSpan window)
    {
        if (address is null)
        {
            return true;
        }

        Sweep(window);
        var key = Normalize(address);
        if (!_windows.TryGetValue(key, out var w))
        {
            if (_windows.Count >= MaxAddresses)
            {
                return false;
            }

            w = _windows.GetOrAdd(key, static (_, now) => new Window { Start = now }, _time.GetTimestamp());
        }

        lock (w)
        {
            var now = _time.GetTimestamp();
            if (_time.GetElapsedTime(w.Start, now) >= window)
            {
                w.Start = now;
                w.Count = 0;
            }

            w.Count++;
        }

        return true;
    }

    /// <summary>Forgets windows that ended, at most once per window.</summary>
    private void Sweep(TimeSpan window)
    {
        var last = Volatile.Read(ref _lastSweep);
        if (_time.GetElapsedTime(last) < window || Interlocked.CompareExchange(ref _lastSweep, _time.GetTimestamp(), last) != last)
        {
            return;
        }

        foreach (var (key, w) in _windows)
        {
            bool ended;
            lock (w)
            {
                ended = _time.GetElapsedTime(w.Start) >= window;
            }

            if (ended)
            {
                _windows.TryRemove(key, out _);
            }
        }
    }

    private static IPAddress Normalize(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            return address.MapToIPv4();
        }

        if (address.AddressFamily != AddressFamily.InterNetworkV6)
        {
            return address;
        }

        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out _);
        bytes[8..].Clear();
        return new IPAddress(bytes);
    }

    private sealed class Window
    {
        public long Start;
        public int Count;
    }
}

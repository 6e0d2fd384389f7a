using System.Collections.Concurrent;

namespace Gateway.Telemetry;

/// <summary>
/// Keeps a repeated log line from flooding the log: for each key, at most one line per interval, and the line says how
/// many were left out since the previous one. Every event is still counted in metrics by its caller. Thread-safe; one
/// small entry per key (keys come from small fixed sets: a limit and a reason, a cluster and an error kind).
/// </summary>
internal sealed class LogThrottle(TimeProvider time, TimeSpan interval)
{
    private readonly ConcurrentDictionary<object, Entry> _entries = new();

    /// <summary>Whether to write the line for <paramref name="key"/> now, at most once per <paramref name="every"/> (default: the throttle's interval).</summary>
    /// <param name="key">What the line is about; equal keys share one allowance.</param>
    /// <param name="suppressed">When true is returned, how many lines of this key were left out since the last one.</param>
    /// <param name="every">An interval for this call, when the caller's setting can change at run time.</param>
    public bool ShouldLog(object key, out long suppressed, TimeSpan? every = null)
    {
        var entry = _entries.GetOrAdd(key, static _ => new Entry());
        var now = time.GetTimestamp();
        lock (entry)
        {
            if (entry.Last != 0 && time.GetElapsedTime(entry.Last, now) < (every ?? interval))
            {
                entry.Suppressed++;
                suppressed = 0;
                return false;
            }

            suppressed = entry.Suppressed;
            entry.Suppressed = 0;
            entry.Last = now;
            return true;
        }
    }

    private sealed class Entry
    {
        public long Last;
        public long Suppressed;
    }
}

namespace Replay.Sources;

/// <summary>Records of a source that were stored out of time order and sorted before planning.</summary>
/// <param name="Records">Records that started before a record stored ahead of them.</param>
/// <param name="LargestDisplacement">Most positions a record moved when sorted.</param>
/// <param name="LargestMs">Most source time, ms, by which a record started before one stored ahead of it.</param>
internal sealed record OutOfOrder(long Records, long LargestDisplacement, double LargestMs);

/// <summary>
/// Source time as the planner sees it: records sorted by start (noting how far out of order they were stored), and
/// idle stretches longer than <c>--max-gap</c> shortened to it.
/// </summary>
internal static class SourceTimeline
{
    /// <summary>
    /// Sorts <paramref name="items"/> by start, ties kept in stored order, and says how out of order they were: a record
    /// is out of order when it starts before the latest start stored ahead of it; its displacement is how many
    /// positions sorting moved it. Null when they were in order.
    /// </summary>
    public static OutOfOrder? Sort<T>(List<T> items, Func<T, long> startMicros)
    {
        long outOfOrder = 0, latest = long.MinValue, largestMicros = 0;
        var keyed = new (long Start, int Stored, T Item)[items.Count];
        for (var i = 0; i < items.Count; i++)
        {
            var start = startMicros(items[i]);
            keyed[i] = (start, i, items[i]);
            if (start < latest)
            {
                outOfOrder++;
                largestMicros = Math.Max(largestMicros, latest - start);
            }

            latest = Math.Max(latest, start);
        }

        if (outOfOrder == 0)
        {
            return null;
        }

        Array.Sort(keyed, static (a, b) => a.Start != b.Start ? a.Start.CompareTo(b.Start) : a.Stored.CompareTo(b.Stored));
        long largestDisplacement = 0;
        for (var i = 0; i < keyed.Length; i++)
        {
            largestDisplacement = Math.Max(largestDisplacement, Math.Abs(keyed[i].Stored - i));
            items[i] = keyed[i].Item;
        }

        return new OutOfOrder(outOfOrder, largestDisplacement, largestMicros / 1000.0);
    }

    /// <summary>
    /// Shortens idle stretches: walking records in start order, a stretch in which no record is in flight (from the end
    /// of the last one to end, <c>max(start + duration)</c>, to the next start) longer than
    /// <paramref name="maxGapMicros"/> is cut to it, and every later start moves earlier by what was cut. Think times
    /// within a session computed from the moved starts shrink with it; time inside one record (a long WebSocket
    /// connection) is never cut.
    /// </summary>
    /// <param name="starts">Start times, µs, in ascending order.</param>
    /// <param name="durations">Each record's duration, µs (0 when unknown).</param>
    /// <param name="maxGapMicros">Longest idle stretch kept, µs; null keeps them all.</param>
    /// <param name="removedMicros">Source time removed in all, µs.</param>
    /// <returns>The moved start times.</returns>
    public static long[] CloseGaps(IReadOnlyList<long> starts, IReadOnlyList<long> durations, long? maxGapMicros, out long removedMicros)
    {
        var moved = new long[starts.Count];
        removedMicros = 0;
        var busyUntil = long.MinValue;
        for (var i = 0; i < starts.Count; i++)
        {
            var start = starts[i];
            if (maxGapMicros is { } max && busyUntil != long.MinValue && start - busyUntil > max)
            {
                removedMicros += start - busyUntil - max;
            }

            moved[i] = start - removedMicros;
            busyUntil = Math.Max(busyUntil, start + Math.Max(0, durations[i]));
        }

        return moved;
    }
}

using System.Globalization;
using StackExchange.Redis;

namespace Replay.Workers;

/// <summary>
/// The Redis keys through which a coordinator (<c>replay run|load --workers N</c>) and <c>replay worker</c>
/// processes share a run. Redis is the only coordinator: no process talks to another directly.
/// </summary>
/// <remarks>
/// <list type="table">
/// <item><term><c>replay:work</c></term><description>stream of work items, one per slice of a run's schedule
/// (<c>run</c>, <c>slice</c>); read by the consumer group <c>replay-workers</c>, one consumer per worker. An item
/// stays pending until its worker acknowledges it after publishing the slice's result; a worker that dies leaves it
/// pending, and after <see cref="ClaimIdle"/> without a heartbeat another worker takes it over (XAUTOCLAIM).</description></item>
/// <item><term><c>replay:run:{ID}</c></term><description>hash: the run's <c>spec</c> (arguments, working directory,
/// epoch, slices), written before the first item.</description></item>
/// <item><term><c>replay:run:{ID}:sent</c></term><description>bitmap: bit i is set (SETBIT, atomically, just
/// before the send) by the worker that sends session i; a worker that finds it set skips the session, so none is
/// sent twice even when a slice is taken over.</description></item>
/// <item><term><c>replay:run:{ID}:results</c></term><description>stream of slice results (<c>slice</c>,
/// <c>worker</c>, <c>metrics</c>: an exact export of the slice's histograms and counters, <c>skipped</c>).</description></item>
/// <item><term><c>replay:workers</c></term><description>hash: worker name → its last heartbeat (Unix ms).</description></item>
/// </list>
/// Run keys expire a day after the run starts.
/// </remarks>
internal static class WorkQueue
{
    /// <summary>The work stream.</summary>
    public static readonly RedisKey Work = "replay:work";

    /// <summary>The workers' heartbeats.</summary>
    public static readonly RedisKey Workers = "replay:workers";

    /// <summary>The consumer group of the workers.</summary>
    public const string Group = "replay-workers";

    /// <summary>How often a worker beats and refreshes its pending items.</summary>
    public static readonly TimeSpan Heartbeat = TimeSpan.FromMilliseconds(500);

    /// <summary>A pending item idle this long belongs to a dead worker and may be claimed.</summary>
    public static readonly TimeSpan ClaimIdle = TimeSpan.FromSeconds(3);

    /// <summary>How long run keys live.</summary>
    public static readonly TimeSpan RunLifetime = TimeSpan.FromDays(1);

    /// <summary>A run's spec hash.</summary>
    public static RedisKey Run(string id) => $"replay:run:{id}";

    /// <summary>A run's sent-session bitmap.</summary>
    public static RedisKey Sent(string id) => $"replay:run:{id}:sent";

    /// <summary>A run's result stream.</summary>
    public static RedisKey Results(string id) => $"replay:run:{id}:results";

    /// <summary>Creates the consumer group (and the stream) unless it exists.</summary>
    public static async Task EnsureGroupAsync(IDatabase db)
    {
        try
        {
            await db.StreamCreateConsumerGroupAsync(Work, Group, StreamPosition.NewMessages, createStream: true).ConfigureAwait(false);
        }
        catch (RedisServerException ex) when (ex.Message.Contains("BUSYGROUP", StringComparison.Ordinal))
        {
            // Already there.
        }
    }

    /// <summary>Workers whose heartbeat is at most <paramref name="within"/> old.</summary>
    public static async Task<IReadOnlyList<string>> LiveWorkersAsync(IDatabase db, TimeProvider time, TimeSpan within)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var live = new List<string>();
        foreach (var entry in await db.HashGetAllAsync(Workers).ConfigureAwait(false))
        {
            if (long.TryParse(entry.Value.ToString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var seen) && now - seen <= within.TotalMilliseconds)
            {
                live.Add(entry.Name.ToString());
            }
        }

        return live;
    }
}

using System.Collections.Concurrent;
using System.Runtime.CompilerServices;

namespace Gateway.Admin.Stats;

/// <summary>What the history keeps of one completed exchange (see <see cref="TrafficHistory.Record"/>).</summary>
/// <param name="Listener">The listener's tag (<c>http</c>, <c>grpc</c>, ...).</param>
/// <param name="Route">The route id, or <c>(none)</c>.</param>
/// <param name="Tenant">The authenticated tenant's name, or null for none.</param>
/// <param name="Status">The status the client got (499 for a client that left).</param>
/// <param name="Seconds">The exchange's duration, seconds.</param>
/// <param name="TtftSeconds">Time to first token of a stream, seconds; null for anything else.</param>
/// <param name="RefusedBy">The limit that refused it (a policy, <c>admission:CLUSTER</c>), or null when no limit did.</param>
/// <param name="QueueWait">Time waited in the cluster's admission queue; null when no admission control applied.</param>
/// <param name="TokensIn">Prompt tokens, as the token accounting settled them (0 when unknown).</param>
/// <param name="TokensOut">Completion tokens, as the token accounting settled them (0 when unknown).</param>
internal readonly record struct ExchangeSample(string Listener, string Route, string? Tenant, int Status, double Seconds, double? TtftSeconds,
    string? RefusedBy, TimeSpan? QueueWait, long TokensIn, long TokensOut);

/// <summary>
/// The counters of one second (or, for a running total, of every second since start-up). Writers only add, each with
/// one <see cref="Interlocked"/> operation per counter; readers see each counter whole, the set as it was at about the
/// same moment. About 1.6 KB: three <see cref="LogHistogram"/>s (448 bytes each) and a dozen counters; the refusals by
/// limit add a small dictionary only in a second that had one.
/// </summary>
internal sealed class SecondBucket(long second)
{
    /// <summary>The names of <see cref="Status"/>'s slots, in order.</summary>
    public static readonly string[] StatusNames = ["2xx", "3xx", "4xx", "429", "499", "5xx", "503", "other"];

    /// <summary>Distinct limit names kept per bucket; any further name counts as <c>(other)</c>.</summary>
    private const int MaxLimits = 256;

    private ConcurrentDictionary<string, StrongBox<long>>? _refusedBy;

    /// <summary>Seconds since the gateway started that this bucket counts (-1 for a running total).</summary>
    public long Second { get; } = second;

    public long Requests;
    public long Refused;    // 429 or 503, whoever answered it
    public long Errors;     // other 5xx
    public long TokensIn;
    public long TokensOut;
    public long Queued;     // exchanges that went through an admission queue
    public long QueueWaitMicros;
    public readonly long[] Status = new long[StatusNames.Length];
    public readonly LogHistogram Latency = new();
    public readonly LogHistogram Ttft = new();
    public readonly LogHistogram QueueWait = new();

    /// <summary>Refusals by the limit that answered them (null until the first).</summary>
    public ConcurrentDictionary<string, StrongBox<long>>? RefusedBy => Volatile.Read(ref _refusedBy);

    /// <summary>Counts an exchange: every part of it.</summary>
    public void Add(in ExchangeSample s) => Add(s, BucketParts.All);

    /// <summary>Counts the <paramref name="parts"/> of an exchange that this bucket's reader uses (each part costs its own atomic adds).</summary>
    public void Add(in ExchangeSample s, BucketParts parts)
    {
        if ((parts & BucketParts.Counts) != 0)
        {
            Interlocked.Increment(ref Requests);
            var status = StatusIndex(s.Status);
            Interlocked.Increment(ref Status[status]);
            if (status is 3 or 6)
            {
                Interlocked.Increment(ref Refused);
            }
            else if (status == 5)
            {
                Interlocked.Increment(ref Errors);
            }
        }

        if ((parts & BucketParts.Latency) != 0)
        {
            Latency.Record(s.Seconds);
            if (s.TtftSeconds is { } ttft)
            {
                Ttft.Record(ttft);
            }
        }

        if ((parts & BucketParts.Queue) != 0 && s.QueueWait is { } wait)
        {
            Interlocked.Increment(ref Queued);
            Interlocked.Add(ref QueueWaitMicros, wait.Ticks / TimeSpan.TicksPerMicrosecond);
            QueueWait.Record(wait.TotalSeconds);
        }

        if ((parts & BucketParts.Tokens) != 0)
        {
            if (s.TokensIn > 0)
            {
                Interlocked.Add(ref TokensIn, s.TokensIn);
            }

            if (s.TokensOut > 0)
            {
                Interlocked.Add(ref TokensOut, s.TokensOut);
            }
        }

        if ((parts & BucketParts.Limits) != 0 && s.RefusedBy is { } limit)
        {
            var map = RefusedBy ?? Interlocked.CompareExchange(ref _refusedBy, new(StringComparer.Ordinal), null) ?? _refusedBy!;
            if (!map.TryGetValue(limit, out var box))
            {
                box = map.Count < MaxLimits ? map.GetOrAdd(limit, static _ => new StrongBox<long>()) : map.GetOrAdd("(other)", static _ => new StrongBox<long>());
            }

            Interlocked.Increment(ref box.Value);
        }
    }

    /// <summary>Adds <paramref name="other"/>'s counts into this one (a reader's merge of several seconds).</summary>
    public void Merge(SecondBucket other)
    {
        Requests += Volatile.Read(ref other.Requests);
        Refused += Volatile.Read(ref other.Refused);
        Errors += Volatile.Read(ref other.Errors);
        TokensIn += Volatile.Read(ref other.TokensIn);
        TokensOut += Volatile.Read(ref other.TokensOut);
        Queued += Volatile.Read(ref other.Queued);
        QueueWaitMicros += Volatile.Read(ref other.QueueWaitMicros);
        for (var i = 0; i < Status.Length; i++)
        {
            Status[i] += Volatile.Read(ref other.Status[i]);
        }

        Latency.Add(other.Latency);
        Ttft.Add(other.Ttft);
        QueueWait.Add(other.QueueWait);
        if (other.RefusedBy is { } refused)
        {
            _refusedBy ??= new(StringComparer.Ordinal);
            foreach (var (limit, box) in refused)
            {
                _refusedBy.GetOrAdd(limit, static _ => new StrongBox<long>()).Value += Volatile.Read(ref box.Value);
            }
        }
    }

    /// <summary>The slot of <see cref="Status"/> a status counts in.</summary>
    public static int StatusIndex(int status) => status switch
    {
        429 => 3,
        499 => 4,
        503 => 6,
        >= 200 and < 300 => 0,
        >= 300 and < 400 => 1,
        >= 400 and < 500 => 2,
        >= 500 and < 600 => 5,
        _ => 7,
    };
}

/// <summary>Which parts of an exchange a bucket counts (<see cref="SecondBucket.Add(in ExchangeSample, BucketParts)"/>).</summary>
[Flags]
internal enum BucketParts
{
    /// <summary>Requests, status slots, refused (429/503) and errors (other 5xx).</summary>
    Counts = 1,

    /// <summary>The latency and TTFT histograms.</summary>
    Latency = 2,

    /// <summary>The admission queue's count, total and histogram of waits.</summary>
    Queue = 4,

    /// <summary>Prompt and completion tokens.</summary>
    Tokens = 8,

    /// <summary>Refusals by limit.</summary>
    Limits = 16,

    /// <summary>Everything.</summary>
    All = Counts | Latency | Queue | Tokens | Limits,
}

/// <summary>
/// A ring of <see cref="SecondBucket"/>s, one slot per second, that writers fill without a lock: a writer finds its
/// second's slot; if the slot still holds an older second it swaps in a fresh bucket with one
/// <see cref="Interlocked.CompareExchange{T}(ref T, T, T)"/> (the loser of a race uses the winner's). A second nobody
/// wrote has no bucket, which is how a reader tells "no traffic" from "0 ms". Memory: one reference per slot, plus one
/// bucket for each second that had traffic among the last <see cref="Length"/>.
/// </summary>
internal sealed class SecondRing(int length)
{
    private readonly SecondBucket?[] _slots = new SecondBucket?[length];

    /// <summary>Seconds kept.</summary>
    public int Length => _slots.Length;

    /// <summary>The bucket of <paramref name="second"/>, created if needed; null when the slot already holds a later second (a writer an entire ring late).</summary>
    public SecondBucket? GetOrAdd(long second)
    {
        ref var slot = ref _slots[second % _slots.Length];
        var current = Volatile.Read(ref slot);
        while (current is null || current.Second != second)
        {
            if (current is not null && current.Second > second)
            {
                return null;
            }

            var fresh = new SecondBucket(second);
            var seen = Interlocked.CompareExchange(ref slot, fresh, current);
            if (ReferenceEquals(seen, current))
            {
                return fresh;
            }

            current = seen;
        }

        return current;
    }

    /// <summary>The bucket of <paramref name="second"/>, or null when that second had no traffic (or is no longer kept).</summary>
    public SecondBucket? Get(long second)
    {
        if (second < 0)
        {
            return null;
        }

        var b = Volatile.Read(ref _slots[second % _slots.Length]);
        return b is not null && b.Second == second ? b : null;
    }
}

using System.Diagnostics;
using Yarp.ReverseProxy.Model;

namespace Gateway.Routing.InferenceAware;

/// <summary>
/// Which destination most recently served each prompt-prefix block chain, for one cluster: at most
/// <see cref="Capacity"/> entries (least recently used evicted first), each counting for <see cref="Ttl"/> after its
/// last use. Arrays grow on demand up to the capacity and are reused after that: recording a request allocates nothing.
/// One lock; each request takes it twice (match, then record), for a few dictionary operations per block.
/// </summary>
/// <remarks>
/// A request records only its <em>anchor</em> blocks (<see cref="IsAnchor"/>: the first <see cref="DenseBlocks"/>,
/// then every <see cref="AnchorEvery"/>-th) and its last block, not every block: a long conversation costs the table
/// about 1/16 of its blocks, and its last block is what the next turn, which resends it whole, finds (a later turn of
/// a conversation begins with the earlier turn's whole prompt, so its chain holds the earlier turn's last block).
/// Matching looks every block up and stops at the first anchor no one served: every prompt that shared the prefix up
/// to that anchor would have recorded it.
/// </remarks>
internal sealed class PrefixTable
{
    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, int> _index;
    private readonly TimeProvider _time;
    private readonly long _ttlTicks;
    private Entry[] _entries;
    private int _count;
    private int _head = -1; // most recently used
    private int _tail = -1; // least recently used

    /// <summary>Leading blocks that are all anchors.</summary>
    public const int DenseBlocks = 16;

    /// <summary>After <see cref="DenseBlocks"/>, every this many blocks is an anchor.</summary>
    public const int AnchorEvery = 16;

    /// <summary>Whether block <paramref name="index"/> (0-based) is recorded by every prompt that reaches it.</summary>
    public static bool IsAnchor(int index) => index < DenseBlocks || (index + 1) % AnchorEvery == 0;

    public PrefixTable(int capacity, TimeSpan ttl, TimeProvider time)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        Ttl = ttl;
        _time = time;
        _ttlTicks = (long)(ttl.TotalSeconds * time.TimestampFrequency);
        _entries = new Entry[Math.Min(capacity, 1024)];
        _index = new Dictionary<ulong, int>(Math.Min(capacity, 1024));
    }

    /// <summary>The most entries held.</summary>
    public int Capacity { get; }

    /// <summary>How long an entry counts after its last use.</summary>
    public TimeSpan Ttl { get; }

    /// <summary>Entries held now (expired ones included until they are evicted or replaced).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _count;
            }
        }
    }

    /// <summary>
    /// For each destination, how many of <paramref name="chain"/>'s leading blocks it served: the highest
    /// <c>i + 1</c> whose block <c>i</c> it was the last to serve (a chain hash covers every block before it, so
    /// serving block <c>i</c> means having served the whole prefix up to it). Stops at the first anchor block no one served.
    /// </summary>
    /// <param name="chain">Chained block hashes, first block first.</param>
    /// <param name="destinations">The candidates.</param>
    /// <param name="matched">Receives, per candidate, the number of leading blocks matched (0 … chain length).</param>
    public void Match(ReadOnlySpan<ulong> chain, IReadOnlyList<DestinationState> destinations, Span<int> matched)
    {
        Debug.Assert(matched.Length >= destinations.Count);
        matched.Clear();
        var now = _time.GetTimestamp();
        lock (_lock)
        {
            for (var i = 0; i < chain.Length; i++)
            {
                if (!_index.TryGetValue(chain[i], out var slot) || now - _entries[slot].Stamp > _ttlTicks)
                {
                    if (IsAnchor(i))
                    {
                        return;
                    }

                    continue; // between anchors only a prompt's last block is recorded
                }

                var owner = _entries[slot].Destination;
                for (var d = 0; d < destinations.Count; d++)
                {
                    if (string.Equals(destinations[d].DestinationId, owner, StringComparison.Ordinal))
                    {
                        matched[d] = i + 1;
                        break;
                    }
                }
            }
        }
    }

    /// <summary>The destination that last recorded <paramref name="key"/> (<see cref="RecordKey"/>) within <see cref="Ttl"/>, or null.</summary>
    public string? OwnerOf(ulong key)
    {
        var now = _time.GetTimestamp();
        lock (_lock)
        {
            return _index.TryGetValue(key, out var slot) && now - _entries[slot].Stamp <= _ttlTicks ? _entries[slot].Destination : null;
        }
    }

    /// <summary>Records that <paramref name="destination"/> now owns <paramref name="key"/> (a session's key: always replaced, a session follows its latest turn).</summary>
    public void RecordKey(ulong key, string destination) => Record([key], destination);

    /// <summary>
    /// Records that <paramref name="destination"/> serves every block of <paramref name="chain"/>: its anchor blocks and
    /// its last. Blocks are touched last to first, so that a prefix's first blocks (shared by the most prompts) are the
    /// last to be evicted.
    /// </summary>
    /// <param name="chain">Chained block hashes, first block first.</param>
    /// <param name="destination">The destination chosen.</param>
    /// <param name="replace">
    /// False when the request spilled over for load: blocks already owned keep their owner (only their time is
    /// refreshed), so a hot prefix keeps its home and its overflow is placed by load, not moved along the fleet.
    /// </param>
    public void Record(ReadOnlySpan<ulong> chain, string destination, bool replace = true)
    {
        var now = _time.GetTimestamp();
        lock (_lock)
        {
            for (var i = chain.Length - 1; i >= 0; i--)
            {
                if (i != chain.Length - 1 && !IsAnchor(i))
                {
                    continue;
                }

                if (_index.TryGetValue(chain[i], out var slot))
                {
                    if (replace || now - _entries[slot].Stamp > _ttlTicks)
                    {
                        _entries[slot].Destination = destination;
                    }

                    _entries[slot].Stamp = now;
                    MoveToHead(slot);
                    continue;
                }

                if (_count < Capacity)
                {
                    if (_count == _entries.Length)
                    {
                        Array.Resize(ref _entries, (int)Math.Min(Capacity, _entries.Length * 2L));
                    }

                    slot = _count++;
                }
                else
                {
                    slot = _tail;
                    _index.Remove(_entries[slot].Key);
                    Unlink(slot);
                }

                _entries[slot] = new Entry { Key = chain[i], Destination = destination, Stamp = now, Prev = -1, Next = -1 };
                _index[chain[i]] = slot;
                LinkHead(slot);
            }
        }
    }

    private void MoveToHead(int slot)
    {
        if (slot != _head)
        {
            Unlink(slot);
            LinkHead(slot);
        }
    }

    private void Unlink(int slot)
    {
        ref var e = ref _entries[slot];
        if (e.Prev >= 0)
        {
            _entries[e.Prev].Next = e.Next;
        }
        else
        {
            _head = e.Next;
        }

        if (e.Next >= 0)
        {
            _entries[e.Next].Prev = e.Prev;
        }
        else
        {
            _tail = e.Prev;
        }

        e.Prev = e.Next = -1;
    }

    private void LinkHead(int slot)
    {
        ref var e = ref _entries[slot];
        e.Prev = -1;
        e.Next = _head;
        if (_head >= 0)
        {
            _entries[_head].Prev = slot;
        }

        _head = slot;
        if (_tail < 0)
        {
            _tail = slot;
        }
    }

    private struct Entry
    {
        public ulong Key;
        public string Destination;
        public long Stamp;
        public int Prev;
        public int Next;
    }
}

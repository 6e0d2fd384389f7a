using System.Buffers;

namespace Replay.Clients;

/// <summary>A growable list of token arrival timestamps, on a pooled array; reused by one request at a time.</summary>
internal sealed class TokenTimes : IDisposable
{
    private long[] _items = ArrayPool<long>.Shared.Rent(64);

    /// <summary>Number of timestamps.</summary>
    public int Count { get; private set; }

    /// <summary>The timestamps.</summary>
    public ReadOnlySpan<long> Span => _items.AsSpan(0, Count);

    /// <summary>Adds a timestamp.</summary>
    public void Add(long timestamp)
    {
        if (Count == _items.Length)
        {
            var bigger = ArrayPool<long>.Shared.Rent(_items.Length * 2);
            _items.AsSpan().CopyTo(bigger);
            ArrayPool<long>.Shared.Return(_items);
            _items = bigger;
        }

        _items[Count++] = timestamp;
    }

    /// <summary>Empties the list.</summary>
    public void Clear() => Count = 0;

    /// <inheritdoc/>
    public void Dispose()
    {
        ArrayPool<long>.Shared.Return(_items);
        _items = [];
        Count = 0;
    }
}

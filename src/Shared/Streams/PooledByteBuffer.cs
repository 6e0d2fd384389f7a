using System.Buffers;

namespace Contracts.Streams;

/// <summary>
/// A growable byte buffer rented from <see cref="ArrayPool{T}.Shared"/>, bounded by a caller-given maximum: the carried-over
/// partial data of the push readers. Holds no array until the first byte is appended; <see cref="Dispose"/> returns it.
/// A mutable struct: keep it in a field and never copy it.
/// </summary>
internal struct PooledByteBuffer : IDisposable
{
    private byte[]? _array;
    private int _length;

    /// <summary>Bytes held.</summary>
    public readonly int Length => _length;

    /// <summary>The bytes held.</summary>
    public readonly ReadOnlySpan<byte> Span => _array is null ? default : _array.AsSpan(0, _length);

    /// <summary>The bytes held, writable (for in-place unmasking).</summary>
    public readonly Span<byte> WritableSpan => _array is null ? default : _array.AsSpan(0, _length);

    /// <summary>Appends <paramref name="bytes"/> unless the total would exceed <paramref name="max"/> bytes.</summary>
    /// <returns>False, with nothing appended, when the total would exceed <paramref name="max"/>.</returns>
    public bool TryAppend(ReadOnlySpan<byte> bytes, int max)
    {
        if (bytes.Length > max - _length)
        {
            return false;
        }

        if (bytes.IsEmpty)
        {
            return true;
        }

        EnsureCapacity(_length + bytes.Length, max);
        bytes.CopyTo(_array.AsSpan(_length));
        _length += bytes.Length;
        return true;
    }

    /// <summary>Appends one byte unless the total would exceed <paramref name="max"/> bytes.</summary>
    public bool TryAppend(byte b, int max) => TryAppend([b], max);

    /// <summary>Forgets the bytes held and keeps the array for reuse.</summary>
    public void Clear() => _length = 0;

    /// <summary>Drops the last byte (used to strip the data buffer's trailing LF).</summary>
    public void TrimLast()
    {
        if (_length > 0)
        {
            _length--;
        }
    }

    /// <summary>Forgets the bytes held and returns the array to the pool (a large one is not worth keeping idle).</summary>
    public void Release()
    {
        _length = 0;
        if (_array is { } a)
        {
            _array = null;
            ArrayPool<byte>.Shared.Return(a);
        }
    }

    /// <inheritdoc cref="Release"/>
    public void Dispose() => Release();

    private void EnsureCapacity(int needed, int max)
    {
        if (_array is not null && _array.Length >= needed)
        {
            return;
        }

        var size = Math.Max(needed, Math.Min(max, Math.Max(256, (_array?.Length ?? 0) * 2)));
        var next = ArrayPool<byte>.Shared.Rent(size);
        if (_array is { } old)
        {
            old.AsSpan(0, _length).CopyTo(next);
            ArrayPool<byte>.Shared.Return(old);
        }

        _array = next;
    }
}

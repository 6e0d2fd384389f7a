using System.Buffers;

namespace Gateway.Shaping.Tokens;

/// <summary>
/// A growable byte buffer rented from <see cref="ArrayPool{T}.Shared"/>, for bytes a response filter holds back; a mutable
/// struct kept in a field, never copied. <see cref="Release"/> returns the array.
/// </summary>
internal struct PooledBytes
{
    private byte[]? _array;
    private int _length;

    public readonly int Length => _length;

    public readonly ReadOnlySpan<byte> Span => _array.AsSpan(0, _length);

    public void Append(ReadOnlySpan<byte> bytes) => TryAppend(bytes, int.MaxValue);

    public bool TryAppend(ReadOnlySpan<byte> bytes, int max)
    {
        if (bytes.Length > max - _length)
        {
            return false;
        }

        if (_array is null || _array.Length - _length < bytes.Length)
        {
            var next = ArrayPool<byte>.Shared.Rent(Math.Max(_length + bytes.Length, Math.Max(1024, (_array?.Length ?? 0) * 2)));
            if (_array is { } old)
            {
                old.AsSpan(0, _length).CopyTo(next);
                ArrayPool<byte>.Shared.Return(old);
            }

            _array = next;
        }

        bytes.CopyTo(_array.AsSpan(_length));
        _length += bytes.Length;
        return true;
    }

    /// <summary>Drops the first <paramref name="count"/> bytes.</summary>
    public void Discard(int count)
    {
        if (count == 0)
        {
            return;
        }

        _array.AsSpan(count, _length - count).CopyTo(_array);
        _length -= count;
    }

    public void Release()
    {
        _length = 0;
        if (_array is { } a)
        {
            _array = null;
            ArrayPool<byte>.Shared.Return(a);
        }
    }
}

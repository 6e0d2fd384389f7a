using System.Buffers;
using System.Security.Cryptography;

namespace Gateway.Recording.Capture;

/// <summary>
/// Keeps the first <c>cap</c> bytes of a body as it streams by (a tee, not a buffer of the whole body), its full
/// length and, once it outgrows the cap, an incremental SHA-256 of all of it. Bytes live in a rented array that the
/// store writer returns to the pool.
/// </summary>
internal sealed class BodyCapture
{
    private readonly int _cap;
    private byte[] _buffer = [];
    private int _count;
    private long _length;
    private IncrementalHash? _hash;

    public BodyCapture(int cap) => _cap = cap;

    /// <summary>Full length seen so far, in bytes.</summary>
    public long Length => _length;

    /// <summary>Copies what fits under the cap and hashes everything once the cap is passed.</summary>
    public void Append(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        var room = _cap - _count;
        var keep = Math.Min(room, data.Length);
        if (keep > 0)
        {
            EnsureCapacity(_count + keep);
            data[..keep].CopyTo(_buffer.AsSpan(_count));
            _count += keep;
        }

        if (_length + data.Length > _cap)
        {
            if (_hash is null)
            {
                // The body outgrew the cap: from here on the hash must see every byte, the kept prefix first.
                _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                _hash.AppendData(_buffer, 0, _count - keep);
            }

            _hash.AppendData(data);
        }

        _length += data.Length;
    }

    /// <summary>Hands the captured bytes over (the capture is empty afterwards).</summary>
    public CapturedBody Detach()
    {
        var body = new CapturedBody(_buffer, _count, _length, _hash?.GetHashAndReset());
        _hash?.Dispose();
        _hash = null;
        _buffer = [];
        _count = 0;
        _length = 0;
        return body;
    }

    private void EnsureCapacity(int needed)
    {
        if (needed <= _buffer.Length)
        {
            return;
        }

        var size = Math.Min(_cap, Math.Max(needed, Math.Max(1024, _buffer.Length * 2)));
        var next = ArrayPool<byte>.Shared.Rent(size);
        _buffer.AsSpan(0, _count).CopyTo(next);
        if (_buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
        }

        _buffer = next;
    }
}

/// <summary>A detached body: the kept bytes (in a pooled array), the full length and, when truncated, the full SHA-256.</summary>
internal readonly struct CapturedBody
{
    private readonly byte[] _buffer;

    public CapturedBody(byte[] buffer, int count, long length, byte[]? sha256)
    {
        _buffer = buffer;
        Count = count;
        Length = length;
        Sha256 = sha256;
    }

    /// <summary>Bytes kept.</summary>
    public int Count { get; }

    /// <summary>Full body length.</summary>
    public long Length { get; }

    /// <summary>SHA-256 of the full body when it was longer than what was kept; otherwise null (hash the kept bytes).</summary>
    public byte[]? Sha256 { get; }

    /// <summary>The kept bytes.</summary>
    public ReadOnlySpan<byte> Span => _buffer.AsSpan(0, Count);

    /// <summary>Returns the array to the pool; the body must not be used afterwards.</summary>
    public void Return()
    {
        if (_buffer is { Length: > 0 })
        {
            ArrayPool<byte>.Shared.Return(_buffer);
        }
    }
}

namespace Gateway.Forwarding;

/// <summary>
/// The response body stream of an error response under <see cref="ErrorBodyLimit"/>: passes the first
/// <c>maxBytes</c> bytes to the client's stream and discards the rest, reporting the cut once. Write-only; never
/// throws for the discarded bytes, so YARP reads the backend's body to its end and completes the response normally.
/// </summary>
internal sealed class CappedResponseStream(Stream inner, long maxBytes, ErrorBodyLimit limit, HttpContext context) : Stream
{
    private long _written;
    private bool _truncated;

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        var allowed = Allow(buffer.Length);
        if (allowed > 0)
        {
            inner.Write(buffer[..allowed]);
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var allowed = Allow(buffer.Length);
        return allowed > 0 ? inner.WriteAsync(buffer[..allowed], cancellationToken) : ValueTask.CompletedTask;
    }

    public override void Flush() => inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    /// <summary>How many of <paramref name="count"/> bytes still fit under the cap; reports the first cut.</summary>
    private int Allow(int count)
    {
        var allowed = (int)Math.Min(count, maxBytes - _written);
        _written += allowed;
        if (allowed < count && !_truncated)
        {
            _truncated = true;
            limit.Truncated(context);
        }

        return allowed;
    }
}

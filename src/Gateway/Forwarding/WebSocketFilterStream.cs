namespace Gateway.Forwarding;

/// <summary>
/// The client's side of a proxied WebSocket session as YARP reads and writes it, with the frame boundaries of both
/// directions followed (<see cref="WebSocketFrameBoundaries"/>) so that a filter can put a frame of its own between two
/// frames, never inside one: the base of the gateway's connection filters (<see cref="Shaping.WebSocketMessageLimit"/>,
/// <see cref="WebSocketIdleTimeout"/>). Writes are serialized by <see cref="WriteLock"/>, since a filter writes its own
/// close frame beside YARP's copy.
/// </summary>
internal abstract class WebSocketFilterStream(Stream inner) : Stream
{
    /// <summary>The client's connection.</summary>
    protected Stream Inner { get; } = inner;

    /// <summary>Held while anything is written to the client (YARP's copy or the filter's own frame).</summary>
    protected SemaphoreSlim WriteLock { get; } = new(1, 1);

    /// <summary>The boundaries of the client's frames (what YARP reads).</summary>
    protected WebSocketFrameBoundaries FromClient { get; } = new();

    /// <summary>The boundaries of the frames sent to the client (what YARP writes).</summary>
    protected WebSocketFrameBoundaries ToClient { get; } = new();

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public abstract override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default);

    public abstract override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count, default).GetAwaiter().GetResult();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer, offset, count, default).GetAwaiter().GetResult();

    public override Task FlushAsync(CancellationToken cancellationToken) => Inner.FlushAsync(cancellationToken);

    public override void Flush() => Inner.Flush();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    /// <summary>Writes <paramref name="frame"/> (the filter's own) to the client and flushes it; call with <see cref="WriteLock"/> held.</summary>
    protected async Task WriteFrameAsync(byte[] frame, CancellationToken cancellationToken)
    {
        await Inner.WriteAsync(frame, cancellationToken);
        await Inner.FlushAsync(cancellationToken);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Inner.Dispose();
            FromClient.Dispose();
            ToClient.Dispose();
        }

        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        Dispose(true);
        await base.DisposeAsync();
        GC.SuppressFinalize(this);
    }
}

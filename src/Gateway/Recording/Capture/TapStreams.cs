using System.IO.Pipelines;
using Microsoft.AspNetCore.Http.Features;

namespace Gateway.Recording.Capture;

/// <summary>A read-only stream that shows every byte read to a tap before handing it on (request bodies).</summary>
internal sealed class ReadTapStream(Stream inner, Action<ReadOnlySpan<byte>> tap) : Stream
{
    public override bool CanRead => true;

    public override bool CanSeek => inner.CanSeek;

    public override bool CanWrite => false;

    public override long Length => inner.Length;

    public override long Position { get => inner.Position; set => inner.Position = value; }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var read = await inner.ReadAsync(buffer, cancellationToken);
        tap(buffer.Span[..read]);
        return read;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count)
    {
        var read = inner.Read(buffer, offset, count);
        tap(buffer.AsSpan(offset, read));
        return read;
    }

    public override void Flush() => inner.Flush();

    public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>
/// A write stream that shows every byte written to a tap, then writes it on (response bodies). Flushes pass through
/// at once, so a streamed token reaches the client as soon as YARP flushes it.
/// </summary>
internal sealed class WriteTapStream(Stream inner, Action<ReadOnlySpan<byte>> tap) : Stream
{
    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        tap(buffer.Span);
        return inner.WriteAsync(buffer, cancellationToken);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count)
    {
        tap(buffer.AsSpan(offset, count));
        inner.Write(buffer, offset, count);
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override void Flush() => inner.Flush();

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}

/// <summary>
/// The response body feature with a tapped stream. Everything else (start, completion with trailers, disabling
/// buffering) goes to the server's own feature, so gRPC trailers and stream completion behave exactly as without it.
/// </summary>
internal sealed class TapResponseBodyFeature : IHttpResponseBodyFeature
{
    private readonly IHttpResponseBodyFeature _inner;
    private PipeWriter? _writer;

    public TapResponseBodyFeature(IHttpResponseBodyFeature inner, Action<ReadOnlySpan<byte>> tap)
    {
        _inner = inner;
        Stream = new WriteTapStream(inner.Stream, tap);
    }

    public Stream Stream { get; }

    public PipeWriter Writer => _writer ??= PipeWriter.Create(Stream, new StreamPipeWriterOptions(leaveOpen: true));

    public Task CompleteAsync() => _writer is null ? _inner.CompleteAsync() : CompleteWriterAsync();

    public void DisableBuffering() => _inner.DisableBuffering();

    public Task SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken = default) =>
        SendFileFallback.SendFileAsync(Stream, path, offset, count, cancellationToken);

    public Task StartAsync(CancellationToken cancellationToken = default) => _inner.StartAsync(cancellationToken);

    private async Task CompleteWriterAsync()
    {
        await _writer!.FlushAsync();
        await _inner.CompleteAsync();
    }
}

/// <summary>
/// The upgrade feature with a tapped connection: once upgraded (WebSocket), what the client sends is seen by one
/// tap and what is sent to it by another.
/// </summary>
internal sealed class TapUpgradeFeature(IHttpUpgradeFeature inner, Action<ReadOnlySpan<byte>> fromClient, Action<ReadOnlySpan<byte>> toClient, Action onUpgraded) : IHttpUpgradeFeature
{
    public bool IsUpgradableRequest => inner.IsUpgradableRequest;

    public async Task<Stream> UpgradeAsync()
    {
        var stream = await inner.UpgradeAsync();
        onUpgraded();
        return new DuplexTapStream(stream, fromClient, toClient);
    }
}

/// <summary>
/// The extended CONNECT feature (a WebSocket over HTTP/2, RFC 8441) with a tapped stream: once accepted, what the client
/// sends is seen by one tap and what is sent to it by another, as with <see cref="TapUpgradeFeature"/>.
/// </summary>
internal sealed class TapExtendedConnectFeature(IHttpExtendedConnectFeature inner, Action<ReadOnlySpan<byte>> fromClient, Action<ReadOnlySpan<byte>> toClient, Action onUpgraded) : IHttpExtendedConnectFeature
{
    public bool IsExtendedConnect => inner.IsExtendedConnect;

    public string? Protocol => inner.Protocol;

    public async ValueTask<Stream> AcceptAsync()
    {
        var stream = await inner.AcceptAsync();
        onUpgraded();
        return new DuplexTapStream(stream, fromClient, toClient);
    }
}

/// <summary>A duplex stream (an upgraded connection) with a tap on each direction.</summary>
internal sealed class DuplexTapStream(Stream inner, Action<ReadOnlySpan<byte>> onRead, Action<ReadOnlySpan<byte>> onWrite) : Stream
{
    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var read = await inner.ReadAsync(buffer, cancellationToken);
        onRead(buffer.Span[..read]);
        return read;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count)
    {
        var read = inner.Read(buffer, offset, count);
        onRead(buffer.AsSpan(offset, read));
        return read;
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        onWrite(buffer.Span);
        return inner.WriteAsync(buffer, cancellationToken);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count)
    {
        onWrite(buffer.AsSpan(offset, count));
        inner.Write(buffer, offset, count);
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override void Flush() => inner.Flush();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }

        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        await inner.DisposeAsync();
        await base.DisposeAsync();
    }
}

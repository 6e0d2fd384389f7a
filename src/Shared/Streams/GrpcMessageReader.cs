using System.Buffers.Binary;

namespace Contracts.Streams;

/// <summary>
/// One gRPC message as <see cref="GrpcMessageReader"/> reports it: the <c>Length-Prefixed-Message</c> of gRPC over HTTP/2
/// (grpc/grpc <c>doc/PROTOCOL-HTTP2.md</c>: Compressed-Flag, 1 byte; Message-Length, 4 bytes big-endian; Message).
/// A <c>ref struct</c>: <see cref="Payload"/> points into the caller's chunk or the reader's buffer and is valid only
/// during the <see cref="IGrpcMessageHandler.OnMessage"/> call.
/// </summary>
public readonly ref struct GrpcMessage
{
    /// <summary>Creates a message (the reader does this; public for tests of handlers).</summary>
    public GrpcMessage(ReadOnlySpan<byte> payload, bool isCompressed, long offset)
    {
        Payload = payload;
        IsCompressed = isCompressed;
        Offset = offset;
    }

    /// <summary>The message bytes as sent (a serialized protobuf, or compressed with the call's <c>grpc-encoding</c> when <see cref="IsCompressed"/>).</summary>
    public ReadOnlySpan<byte> Payload { get; }

    /// <summary>The Compressed-Flag: true when the payload is compressed with the <c>grpc-encoding</c> of the call. Not decompressed here.</summary>
    public bool IsCompressed { get; }

    /// <summary>Stream offset of the message's 5-byte prefix, in bytes from the first byte of the body.</summary>
    public long Offset { get; }

    /// <summary>Stream offset just past the message, in bytes.</summary>
    public long EndOffset => Offset + 5 + Payload.Length;
}

/// <summary>
/// Receives what <see cref="GrpcMessageReader.Append"/> finds, synchronously, during the call that completed it (so the
/// time of the call is the time the message's last byte arrived).
/// </summary>
public interface IGrpcMessageHandler
{
    /// <summary>A complete message; <paramref name="message"/> is valid only during this call.</summary>
    void OnMessage(in GrpcMessage message);

    /// <summary>
    /// A message longer than <see cref="GrpcMessageReader.MaxMessageBytes"/> has been read past (skipped, not buffered).
    /// Counted in <see cref="GrpcMessageReader.SkippedMessages"/>.
    /// </summary>
    /// <param name="length">Its declared length, in bytes (prefix excluded).</param>
    /// <param name="isCompressed">Its Compressed-Flag.</param>
    /// <param name="offset">Stream offset of its prefix, in bytes.</param>
    void OnMessageSkipped(long length, bool isCompressed, long offset)
    {
    }
}

/// <summary>
/// A push parser of a gRPC request or response body (a sequence of length-prefixed messages, grpc/grpc
/// <c>doc/PROTOCOL-HTTP2.md</c> "Length-Prefixed-Message"), fed arbitrary chunks, messages split anywhere.
/// </summary>
/// <remarks>
/// A message that lies whole inside one chunk is reported straight from the chunk (no copy); one split across chunks is
/// assembled in a buffer rented from <see cref="System.Buffers.ArrayPool{T}.Shared"/>, bounded by
/// <see cref="MaxMessageBytes"/>; a longer message is skipped (counted, never buffered). A Compressed-Flag other than 0 or
/// 1 is a protocol error: the reader becomes <see cref="IsFaulted"/> and ignores the rest of the stream.
/// <see cref="Dispose"/> returns the buffer. Not thread-safe.
/// </remarks>
public sealed class GrpcMessageReader : IDisposable
{
    /// <summary>The default of <see cref="MaxMessageBytes"/>: 4 MiB, gRPC's own default receive limit.</summary>
    public const int DefaultMaxMessageBytes = 4 << 20;

    /// <summary>Bytes in the length prefix: the Compressed-Flag and the 4-byte big-endian Message-Length.</summary>
    public const int PrefixLength = 5;

    private PooledByteBuffer _payload;
    private long _prefix; // up to 5 prefix bytes held while the prefix is split, shifted in
    private int _prefixHeld;
    private bool _compressed;
    private long _remaining; // payload bytes still to come for the current message
    private bool _inPayload;
    private bool _skipping;
    private long _messageOffset;
    private long _messageLength;
    private long _offset;
    private bool _disposed;

    /// <summary>Creates a reader.</summary>
    /// <param name="maxMessageBytes">Largest message payload reported, in bytes; at least 0; default <see cref="DefaultMaxMessageBytes"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxMessageBytes"/> is negative.</exception>
    public GrpcMessageReader(int maxMessageBytes = DefaultMaxMessageBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxMessageBytes);
        MaxMessageBytes = maxMessageBytes;
    }

    /// <summary>Largest message payload reported, in bytes.</summary>
    public int MaxMessageBytes { get; }

    /// <summary>Bytes appended so far.</summary>
    public long BytesConsumed => _offset;

    /// <summary>Messages reported to <see cref="IGrpcMessageHandler.OnMessage"/>.</summary>
    public long Messages { get; private set; }

    /// <summary>Messages skipped because they were longer than <see cref="MaxMessageBytes"/>.</summary>
    public long SkippedMessages { get; private set; }

    /// <summary>Whether a protocol error (a Compressed-Flag other than 0 or 1) stopped the reader.</summary>
    public bool IsFaulted { get; private set; }

    /// <summary>Whether the bytes so far end exactly between messages: a body that ends here is not truncated.</summary>
    public bool IsAtMessageBoundary => _prefixHeld == 0 && !_inPayload && !IsFaulted;

    /// <summary>
    /// Parses <paramref name="chunk"/> and calls <paramref name="handler"/> for each message it completes, in order.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The reader was disposed.</exception>
    public void Append(ReadOnlySpan<byte> chunk, IGrpcMessageHandler handler)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(handler);
        while (!chunk.IsEmpty && !IsFaulted)
        {
            if (!_inPayload)
            {
                if (_prefixHeld == 0 && chunk.Length >= PrefixLength)
                {
                    // Fast path: the prefix is whole in the chunk, and maybe the whole message.
                    var flag = chunk[0];
                    var length = BinaryPrimitives.ReadUInt32BigEndian(chunk[1..]);
                    if (!StartMessage(flag, length))
                    {
                        return;
                    }

                    _offset += PrefixLength;
                    chunk = chunk[PrefixLength..];
                    if (!_skipping && chunk.Length >= length)
                    {
                        _inPayload = false;
                        Messages++;
                        handler.OnMessage(new GrpcMessage(chunk[..(int)length], _compressed, _messageOffset));
                        _offset += length;
                        chunk = chunk[(int)length..];
                    }
                    else if (length == 0)
                    {
                        Finish(handler);
                    }

                    continue;
                }

                _prefix = (_prefix << 8) | chunk[0];
                _prefixHeld++;
                _offset++;
                chunk = chunk[1..];
                if (_prefixHeld == PrefixLength)
                {
                    _prefixHeld = 0;
                    if (!StartMessage((byte)(_prefix >> 32), (uint)_prefix))
                    {
                        return;
                    }

                    _messageOffset = _offset - PrefixLength;
                    if (_remaining == 0)
                    {
                        Finish(handler);
                    }
                }

                continue;
            }

            var take = (int)Math.Min(_remaining, chunk.Length);
            if (!_skipping)
            {
                _payload.TryAppend(chunk[..take], MaxMessageBytes);
            }

            _remaining -= take;
            _offset += take;
            chunk = chunk[take..];
            if (_remaining == 0)
            {
                Finish(handler);
            }
        }
    }

    /// <summary>Returns the pooled buffer; the reader cannot be used afterwards.</summary>
    public void Dispose()
    {
        _disposed = true;
        _payload.Release();
    }

    private bool StartMessage(byte flag, uint length)
    {
        if (flag > 1)
        {
            IsFaulted = true;
            _payload.Release();
            return false;
        }

        _compressed = flag == 1;
        _messageOffset = _offset;
        _messageLength = length;
        _remaining = length;
        _skipping = length > (uint)MaxMessageBytes;
        _inPayload = true;
        _prefix = 0;
        return true;
    }

    private void Finish(IGrpcMessageHandler handler)
    {
        _inPayload = false;
        if (_skipping)
        {
            _skipping = false;
            SkippedMessages++;
            handler.OnMessageSkipped(_messageLength, _compressed, _messageOffset);
            return;
        }

        Messages++;
        try
        {
            handler.OnMessage(new GrpcMessage(_payload.Span, _compressed, _messageOffset));
        }
        finally
        {
            _payload.Clear();
        }
    }
}

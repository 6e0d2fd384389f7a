using System.Buffers.Binary;

namespace Contracts.Streams;

/// <summary>
/// A push parser of one direction of a WebSocket connection (RFC 6455 §5: base framing §5.2, masking §5.3, fragmentation
/// §5.4, control frames §5.5), fed the raw bytes after the upgrade in arbitrary chunks.
/// </summary>
/// <remarks>
/// <para>
/// Reports each frame (<see cref="IWebSocketFrameHandler.OnFrame"/>) and each complete message
/// (<see cref="IWebSocketFrameHandler.OnMessage"/>): text and binary messages assembled from their fragments, with control
/// frames (ping, pong, close) interleaved between fragments reported as their own messages as they come. Masked payloads
/// are unmasked (the input is never modified). Frame lengths of 7, 16 and 64 bits are read. RSV1 is reported
/// (<c>permessage-deflate</c>, RFC 7692) but nothing is decompressed; RSV2/RSV3 are reported, not checked, since the
/// reader does not know the negotiated extensions. Masking is not required either way: one reader type serves both directions.
/// </para>
/// <para>
/// A frame that breaks RFC 6455's rules (<see cref="WebSocketFrameError"/>) stops the reader: <see cref="Error"/> says
/// why and later bytes are ignored. A text or binary message larger than <see cref="MaxMessageBytes"/> is read past
/// without being kept and reported with <see cref="IWebSocketFrameHandler.OnMessageSkipped"/>.
/// </para>
/// <para>
/// Memory: an unmasked message whose one frame lies whole inside a chunk is reported from the chunk (no copy); anything
/// else is assembled in buffers rented from <see cref="System.Buffers.ArrayPool{T}.Shared"/>, bounded by
/// <see cref="MaxMessageBytes"/> (control frames by 125 bytes). <see cref="Dispose"/> returns them. Not thread-safe.
/// </para>
/// </remarks>
public sealed class WebSocketFrameReader : IDisposable
{
    /// <summary>The default of <see cref="MaxMessageBytes"/>: 1 MiB.</summary>
    public const int DefaultMaxMessageBytes = 1 << 20;

    /// <summary>Largest control frame payload (§5.5).</summary>
    public const int MaxControlPayload = 125;

    private readonly byte[] _header = new byte[14];
    private int _headerHeld;
    private int _headerNeeded = 2;

    private PooledByteBuffer _message;
    private PooledByteBuffer _control;

    // The current frame.
    private bool _inPayload;
    private WebSocketFrame _frame;
    private long _remaining;
    private uint _mask;
    private int _maskIndex;

    // The current text or binary message.
    private WebSocketOpcode _messageOpcode; // Continuation when none is in progress
    private bool _messageCompressed;
    private bool _messageSkipping;
    private int _messageFrames;
    private long _messageLength;
    private long _messageOffset;

    private long _offset;
    private bool _disposed;

    /// <summary>Creates a reader.</summary>
    /// <param name="maxMessageBytes">Largest text or binary message kept, in bytes (all fragments); at least 0; default <see cref="DefaultMaxMessageBytes"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxMessageBytes"/> is negative.</exception>
    public WebSocketFrameReader(int maxMessageBytes = DefaultMaxMessageBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxMessageBytes);
        MaxMessageBytes = maxMessageBytes;
    }

    /// <summary>Largest text or binary message kept, in bytes.</summary>
    public int MaxMessageBytes { get; }

    /// <summary>Bytes appended so far.</summary>
    public long BytesConsumed => _offset;

    /// <summary>Frames completed so far (control frames included).</summary>
    public long Frames { get; private set; }

    /// <summary>Messages reported to <see cref="IWebSocketFrameHandler.OnMessage"/> (control frames included).</summary>
    public long Messages { get; private set; }

    /// <summary>Text or binary messages skipped because they were larger than <see cref="MaxMessageBytes"/>.</summary>
    public long SkippedMessages { get; private set; }

    /// <summary>Why the reader stopped, or <see cref="WebSocketFrameError.None"/>.</summary>
    public WebSocketFrameError Error { get; private set; }

    /// <summary>Whether a Close frame has been read (RFC 6455 §5.5.1: nothing follows it in this direction).</summary>
    public bool CloseReceived { get; private set; }

    /// <summary>Whether the bytes so far end between frames (no partial frame). A message may still be in progress (see <see cref="IsAtMessageBoundary"/>).</summary>
    public bool IsAtFrameBoundary => _headerHeld == 0 && !_inPayload && Error == WebSocketFrameError.None;

    /// <summary>Whether the bytes so far end between messages: between frames, and no fragmented message is in progress.</summary>
    public bool IsAtMessageBoundary => IsAtFrameBoundary && _messageOpcode == WebSocketOpcode.Continuation;

    /// <summary>Parses <paramref name="chunk"/> and calls <paramref name="handler"/> for each frame and message it completes, in order.</summary>
    /// <exception cref="ObjectDisposedException">The reader was disposed.</exception>
    public void Append(ReadOnlySpan<byte> chunk, IWebSocketFrameHandler handler)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(handler);
        while (!chunk.IsEmpty && Error == WebSocketFrameError.None)
        {
            if (!_inPayload)
            {
                var take = Math.Min(_headerNeeded - _headerHeld, chunk.Length);
                chunk[..take].CopyTo(_header.AsSpan(_headerHeld));
                _headerHeld += take;
                _offset += take;
                chunk = chunk[take..];
                if (_headerHeld < _headerNeeded)
                {
                    continue;
                }

                if (_headerNeeded == 2)
                {
                    var len7 = _header[1] & 0x7F;
                    _headerNeeded = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((_header[1] & 0x80) != 0 ? 4 : 0);
                    if (_headerHeld < _headerNeeded)
                    {
                        continue;
                    }
                }

                if (!StartFrame())
                {
                    return;
                }

                if (_remaining == 0)
                {
                    EndFrame(handler);
                    continue;
                }

                if (!_frame.IsMasked && _frame.Fin && chunk.Length >= _remaining
                    && (_frame.IsControl || (_messageFrames == 1 && !_messageSkipping)))
                {
                    // Fast path: an unmasked single-frame message whole in this chunk.
                    var payload = chunk[..(int)_remaining];
                    _offset += _remaining;
                    chunk = chunk[(int)_remaining..];
                    _remaining = 0;
                    _inPayload = false;
                    Frames++;
                    handler.OnFrame(_frame);
                    Report(handler, _frame.IsControl ? _frame.Opcode : _messageOpcode, payload, _frame.IsControl ? _frame.Rsv1 : _messageCompressed,
                        1, _frame.IsControl ? _frame.Offset : _messageOffset);
                    if (!_frame.IsControl)
                    {
                        ResetMessage();
                    }

                    continue;
                }

                continue;
            }

            var n = (int)Math.Min(_remaining, chunk.Length);
            CopyPayload(chunk[..n]);
            _remaining -= n;
            _offset += n;
            chunk = chunk[n..];
            if (_remaining == 0)
            {
                EndFrame(handler);
            }
        }
    }

    /// <summary>Returns the pooled buffers; the reader cannot be used afterwards.</summary>
    public void Dispose()
    {
        _disposed = true;
        _message.Release();
        _control.Release();
    }

    private bool StartFrame()
    {
        var b0 = _header[0];
        var b1 = _header[1];
        var opcode = (WebSocketOpcode)(b0 & 0x0F);
        var fin = (b0 & 0x80) != 0;
        var masked = (b1 & 0x80) != 0;
        long length = b1 & 0x7F;
        var at = 2;
        if (length == 126)
        {
            length = BinaryPrimitives.ReadUInt16BigEndian(_header.AsSpan(2));
            at = 4;
        }
        else if (length == 127)
        {
            var l = BinaryPrimitives.ReadUInt64BigEndian(_header.AsSpan(2));
            if (l > long.MaxValue)
            {
                return Fail(WebSocketFrameError.InvalidLength);
            }

            length = (long)l;
            at = 10;
        }

        _mask = masked ? BinaryPrimitives.ReadUInt32BigEndian(_header.AsSpan(at)) : 0;
        _maskIndex = 0;
        var headerLength = _headerNeeded;
        _frame = new WebSocketFrame(opcode, fin, (b0 & 0x40) != 0, (b0 & 0x20) != 0, (b0 & 0x10) != 0, masked, length, _offset - headerLength, headerLength);
        _headerHeld = 0;
        _headerNeeded = 2;
        _remaining = length;
        _inPayload = true;

        switch (opcode)
        {
            case WebSocketOpcode.Close or WebSocketOpcode.Ping or WebSocketOpcode.Pong:
                if (!fin || length > MaxControlPayload)
                {
                    return Fail(WebSocketFrameError.InvalidControlFrame);
                }

                if (opcode == WebSocketOpcode.Close && length == 1)
                {
                    return Fail(WebSocketFrameError.InvalidClosePayload);
                }

                _control.Clear();
                return true;
            case WebSocketOpcode.Text or WebSocketOpcode.Binary:
                if (_messageOpcode != WebSocketOpcode.Continuation)
                {
                    return Fail(WebSocketFrameError.UnexpectedContinuation);
                }

                _messageOpcode = opcode;
                _messageCompressed = _frame.Rsv1;
                _messageOffset = _frame.Offset;
                _messageFrames = 1;
                _messageLength = length;
                _messageSkipping = length > MaxMessageBytes;
                return true;
            case WebSocketOpcode.Continuation:
                if (_messageOpcode == WebSocketOpcode.Continuation)
                {
                    return Fail(WebSocketFrameError.UnexpectedContinuation);
                }

                _messageFrames++;
                _messageLength += length;
                if (!_messageSkipping && _messageLength > MaxMessageBytes)
                {
                    _messageSkipping = true;
                    _message.Release();
                }

                return true;
            default:
                return Fail(WebSocketFrameError.ReservedOpcode);
        }
    }

    private bool Fail(WebSocketFrameError error)
    {
        Error = error;
        _inPayload = false;
        _message.Release();
        _control.Release();
        return false;
    }

    private void CopyPayload(ReadOnlySpan<byte> part)
    {
        ref var target = ref _frame.IsControl ? ref _control : ref _message;
        if (!_frame.IsControl && _messageSkipping)
        {
            return;
        }

        var start = target.Length;
        target.TryAppend(part, _frame.IsControl ? MaxControlPayload : MaxMessageBytes);
        if (_frame.IsMasked)
        {
            var span = target.WritableSpan[start..];
            var mask = _mask;
            var k = _maskIndex;
            for (var i = 0; i < span.Length; i++)
            {
                span[i] ^= (byte)(mask >> (24 - (8 * k)));
                k = (k + 1) & 3;
            }

            _maskIndex = k;
        }
    }

    private void EndFrame(IWebSocketFrameHandler handler)
    {
        _inPayload = false;
        Frames++;
        handler.OnFrame(_frame);
        if (_frame.IsControl)
        {
            try
            {
                Report(handler, _frame.Opcode, _control.Span, _frame.Rsv1, 1, _frame.Offset);
            }
            finally
            {
                _control.Clear();
            }

            return;
        }

        if (!_frame.Fin)
        {
            return;
        }

        try
        {
            if (_messageSkipping)
            {
                SkippedMessages++;
                handler.OnMessageSkipped(_messageOpcode, _messageLength, _messageFrames);
            }
            else
            {
                Report(handler, _messageOpcode, _message.Span, _messageCompressed, _messageFrames, _messageOffset);
            }
        }
        finally
        {
            ResetMessage();
        }
    }

    private void Report(IWebSocketFrameHandler handler, WebSocketOpcode opcode, ReadOnlySpan<byte> payload, bool compressed, int frames, long offset)
    {
        if (opcode == WebSocketOpcode.Close)
        {
            CloseReceived = true;
        }

        Messages++;
        handler.OnMessage(new WebSocketMessage(opcode, payload, compressed, frames, offset, _frame.EndOffset));
    }

    private void ResetMessage()
    {
        _messageOpcode = WebSocketOpcode.Continuation;
        _messageSkipping = false;
        _messageFrames = 0;
        _messageLength = 0;
        _message.Clear();
    }
}

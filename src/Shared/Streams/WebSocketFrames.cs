namespace Contracts.Streams;

/// <summary>WebSocket opcodes (RFC 6455 §5.2, §11.8).</summary>
public enum WebSocketOpcode : byte
{
    /// <summary>0x0: a continuation fragment of a text or binary message.</summary>
    Continuation = 0x0,

    /// <summary>0x1: a text message (UTF-8).</summary>
    Text = 0x1,

    /// <summary>0x2: a binary message.</summary>
    Binary = 0x2,

    /// <summary>0x8: a close control frame (§5.5.1).</summary>
    Close = 0x8,

    /// <summary>0x9: a ping control frame (§5.5.2).</summary>
    Ping = 0x9,

    /// <summary>0xA: a pong control frame (§5.5.3).</summary>
    Pong = 0xA,
}

/// <summary>Why <see cref="WebSocketFrameReader"/> stopped (RFC 6455 §5.2, §5.4, §5.5 rules a stream broke).</summary>
public enum WebSocketFrameError
{
    /// <summary>No error.</summary>
    None,

    /// <summary>A reserved opcode (0x3–0x7, 0xB–0xF).</summary>
    ReservedOpcode,

    /// <summary>A control frame with FIN clear or a payload over 125 bytes (§5.5).</summary>
    InvalidControlFrame,

    /// <summary>A continuation frame with no message in progress, or a new text/binary frame inside one (§5.4).</summary>
    UnexpectedContinuation,

    /// <summary>A 64-bit payload length with its most significant bit set (§5.2).</summary>
    InvalidLength,

    /// <summary>A close payload of exactly 1 byte (§5.5.1: the body, if any, starts with a 2-byte status code).</summary>
    InvalidClosePayload,
}

/// <summary>
/// One frame's header, as <see cref="WebSocketFrameReader"/> reports it once the frame's last payload byte has arrived
/// (RFC 6455 §5.2 base framing). The payload itself is reported with its message (<see cref="WebSocketMessage"/>).
/// </summary>
/// <param name="Opcode">The frame's opcode (<see cref="WebSocketOpcode.Continuation"/> for a later fragment).</param>
/// <param name="Fin">The FIN bit: the last fragment of its message.</param>
/// <param name="Rsv1">RSV1; with <c>permessage-deflate</c> negotiated (RFC 7692 §6), set on a compressed message's first frame.</param>
/// <param name="Rsv2">RSV2 (no extension we know uses it).</param>
/// <param name="Rsv3">RSV3 (no extension we know uses it).</param>
/// <param name="IsMasked">Whether the payload was masked (client-to-server frames are, §5.3).</param>
/// <param name="PayloadLength">Payload length in bytes (header excluded).</param>
/// <param name="Offset">Stream offset of the frame's first header byte, in bytes.</param>
/// <param name="HeaderLength">Header length in bytes: 2, plus 2 or 8 for an extended length, plus 4 for a mask key.</param>
public readonly record struct WebSocketFrame(
    WebSocketOpcode Opcode, bool Fin, bool Rsv1, bool Rsv2, bool Rsv3, bool IsMasked, long PayloadLength, long Offset, int HeaderLength)
{
    /// <summary>Whether this is a control frame (close, ping, pong; opcode 0x8 and up).</summary>
    public bool IsControl => (byte)Opcode >= 0x8;

    /// <summary>Stream offset just past the frame, in bytes.</summary>
    public long EndOffset => Offset + HeaderLength + PayloadLength;
}

/// <summary>
/// A complete message: a text or binary message assembled from its fragments, or one control frame (close, ping, pong).
/// A <c>ref struct</c>: <see cref="Payload"/> is unmasked and valid only during <see cref="IWebSocketFrameHandler.OnMessage"/>.
/// </summary>
public readonly ref struct WebSocketMessage
{
    /// <summary>Creates a message (the reader does this; public for tests of handlers).</summary>
    public WebSocketMessage(WebSocketOpcode opcode, ReadOnlySpan<byte> payload, bool isCompressed, int frameCount, long offset, long endOffset)
    {
        Opcode = opcode;
        Payload = payload;
        IsCompressed = isCompressed;
        FrameCount = frameCount;
        Offset = offset;
        EndOffset = endOffset;
    }

    /// <summary>Text, Binary, Close, Ping or Pong (never Continuation).</summary>
    public WebSocketOpcode Opcode { get; }

    /// <summary>The whole payload, unmasked, all fragments joined. Compressed (not inflated) when <see cref="IsCompressed"/>.</summary>
    public ReadOnlySpan<byte> Payload { get; }

    /// <summary>RSV1 of the first frame: with <c>permessage-deflate</c> (RFC 7692 §6) the payload is DEFLATE-compressed. Not decompressed here.</summary>
    public bool IsCompressed { get; }

    /// <summary>Frames the message came in (1 for a control frame or an unfragmented message).</summary>
    public int FrameCount { get; }

    /// <summary>Stream offset of the first frame's first header byte, in bytes.</summary>
    public long Offset { get; }

    /// <summary>Stream offset just past the last frame, in bytes.</summary>
    public long EndOffset { get; }

    /// <summary>For a Close: the status code (§5.5.1, §7.4), or -1 when the close frame had no body (or this is not a Close).</summary>
    public int CloseStatus => Opcode == WebSocketOpcode.Close && Payload.Length >= 2 ? (Payload[0] << 8) | Payload[1] : -1;

    /// <summary>For a Close: the reason, UTF-8 (empty when none, or when this is not a Close).</summary>
    public ReadOnlySpan<byte> CloseReason => Opcode == WebSocketOpcode.Close && Payload.Length > 2 ? Payload[2..] : default;
}

/// <summary>
/// Receives what <see cref="WebSocketFrameReader.Append"/> finds, synchronously, during the call that completed it.
/// For a message, <see cref="OnFrame"/> is called for each of its frames, then <see cref="OnMessage"/> once.
/// </summary>
public interface IWebSocketFrameHandler
{
    /// <summary>A frame, complete (its last payload byte has arrived).</summary>
    void OnFrame(in WebSocketFrame frame)
    {
    }

    /// <summary>A complete message (text or binary, all fragments) or control frame; <paramref name="message"/> is valid only during this call.</summary>
    void OnMessage(in WebSocketMessage message);

    /// <summary>
    /// A text or binary message larger than <see cref="WebSocketFrameReader.MaxMessageBytes"/> has ended: its payload was
    /// skipped, not buffered. Counted in <see cref="WebSocketFrameReader.SkippedMessages"/>.
    /// </summary>
    /// <param name="opcode">Text or Binary.</param>
    /// <param name="length">Its total payload length, in bytes.</param>
    /// <param name="frameCount">Frames it came in.</param>
    void OnMessageSkipped(WebSocketOpcode opcode, long length, int frameCount)
    {
    }
}

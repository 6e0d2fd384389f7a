using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Contracts.Streams;
using Contracts.Wire;

namespace Gateway.Forwarding;

/// <summary>
/// Close frames the gateway writes into a proxied WebSocket connection itself (RFC 6455 §5.5.1): unmasked towards the
/// client (a server's frames are never masked, §5.1), masked with a fresh random key towards the backend (a client's
/// frames always are, §5.3).
/// </summary>
internal static class WebSocketCloseFrame
{
    /// <summary>The most bytes a close frame takes: 2 header bytes, a 4-byte mask key, 125 bytes of payload.</summary>
    public const int MaxLength = 2 + 4 + WebSocketFrameReader.MaxControlPayload;

    /// <summary>
    /// A close frame with <paramref name="status"/> and <paramref name="reason"/> (cut to
    /// <see cref="GatewayCloseReason.MaxReasonBytes"/> UTF-8 bytes on a character boundary).
    /// </summary>
    /// <param name="status">The close status, e.g. 1001 (<see cref="GatewayCloseReason.GoingAway"/>).</param>
    /// <param name="reason">The reason text.</param>
    /// <param name="masked">True for a frame sent to the backend (as a client), false for one sent to the client.</param>
    public static byte[] Create(int status, string reason, bool masked)
    {
        Span<byte> payload = stackalloc byte[2 + GatewayCloseReason.MaxReasonBytes];
        BinaryPrimitives.WriteUInt16BigEndian(payload, (ushort)status);
        var length = 2 + EncodeReason(reason, payload[2..]);
        var frame = new byte[2 + (masked ? 4 : 0) + length];
        frame[0] = 0x80 | (byte)WebSocketOpcode.Close; // FIN + close
        frame[1] = (byte)((masked ? 0x80 : 0) | length);
        var body = frame.AsSpan(2);
        if (masked)
        {
            var key = body[..4];
            RandomNumberGenerator.Fill(key);
            body = body[4..];
            for (var i = 0; i < length; i++)
            {
                body[i] = (byte)(payload[i] ^ key[i & 3]);
            }
        }
        else
        {
            payload[..length].CopyTo(body);
        }

        return frame;
    }

    private static int EncodeReason(string reason, Span<byte> target)
    {
        var chars = reason.Length;
        while (chars > 0 && Encoding.UTF8.GetByteCount(reason.AsSpan(0, chars)) > target.Length)
        {
            chars--;
        }

        if (chars > 0 && char.IsHighSurrogate(reason[chars - 1]))
        {
            chars--;
        }

        return Encoding.UTF8.GetBytes(reason.AsSpan(0, chars), target);
    }
}

/// <summary>
/// Follows the frame boundaries of one direction of a WebSocket connection with the shared
/// <see cref="WebSocketFrameReader"/>, keeping no payload (control frames aside, at most 125 bytes), so that a filter
/// can put a frame of its own between two frames, never inside one, and can see each frame as it starts.
/// </summary>
internal sealed class WebSocketFrameBoundaries : IWebSocketFrameHandler, IDisposable
{
    private readonly WebSocketFrameReader _reader = new(maxMessageBytes: 0);
    private Func<byte, bool>? _admit;
    private ReadOnlyMemory<byte> _chunk;
    private long _chunkStart;
    private int _cut = -1;

    /// <summary>Whether the bytes so far end between frames (false after a protocol error: nothing can be put in then).</summary>
    public bool AtBoundary => _reader.IsAtFrameBoundary;

    /// <summary>Whether a close frame has passed in this direction.</summary>
    public bool CloseSeen => _reader.CloseReceived;

    /// <summary>Follows <paramref name="chunk"/>.</summary>
    public void Advance(ReadOnlySpan<byte> chunk) => _reader.Append(chunk, this);

    /// <summary>
    /// Follows <paramref name="chunk"/> and asks <paramref name="admit"/> about every frame that starts in it, given the
    /// frame's first byte (FIN, RSV and opcode, RFC 6455 §5.2) at a boundary the reader found; when it refuses one,
    /// returns the number of bytes before that frame (the rest must not be passed on), else the chunk's length.
    /// </summary>
    public int Advance(ReadOnlyMemory<byte> chunk, Func<byte, bool> admit)
    {
        if (chunk.IsEmpty)
        {
            return 0;
        }

        if (_reader.IsAtFrameBoundary && !admit(chunk.Span[0]))
        {
            return 0;
        }

        _admit = admit;
        _chunk = chunk;
        _chunkStart = _reader.BytesConsumed;
        _cut = -1;
        try
        {
            _reader.Append(chunk.Span, this);
        }
        finally
        {
            _admit = null;
            _chunk = default;
        }

        return _cut < 0 ? chunk.Length : _cut;
    }

    void IWebSocketFrameHandler.OnFrame(in WebSocketFrame frame)
    {
        // The next frame starts where this one ends; when its first byte is in this chunk, it is asked about now
        // (otherwise at the start of the next chunk).
        if (_admit is null || _cut >= 0)
        {
            return;
        }

        var next = frame.EndOffset - _chunkStart;
        if (next >= 0 && next < _chunk.Length && !_admit(_chunk.Span[(int)next]))
        {
            _cut = (int)next;
        }
    }

    void IWebSocketFrameHandler.OnMessage(in WebSocketMessage message)
    {
    }

    public void Dispose() => _reader.Dispose();
}

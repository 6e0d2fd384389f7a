using System.Buffers;
using System.Globalization;
using Contracts.Streams;
using Replay.Measurement;

namespace Replay.Clients.Readers;

/// <summary>
/// Reads a gRPC response body with the shared push parser <see cref="GrpcMessageReader"/> (5-byte length prefix, any
/// split): a server-streaming call stamps each message as a token; a unary call's <c>inference.v1.GenerateResponse</c>
/// gives its token count (field 2, <c>tokens</c>) when it has one.
/// </summary>
internal sealed class GrpcResponseReader : IGrpcMessageHandler
{
    private const int ReadBufferSize = 4 * 1024;

    private readonly TokenTimes _tokens;
    private readonly bool _streamed;
    private long _now;

    private GrpcResponseReader(TokenTimes tokens, bool streamed)
    {
        _tokens = tokens;
        _streamed = streamed;
    }

    /// <summary>Messages read (skipped over-long ones included).</summary>
    public int Messages { get; private set; }

    /// <summary>When the first message arrived (0 = none).</summary>
    public long FirstMessageTimestamp { get; private set; }

    /// <summary>Unary calls: the response's <c>tokens</c> field, or -1.</summary>
    public int UnaryTokens { get; private set; } = -1;

    /// <summary>Reads <paramref name="content"/> to its end.</summary>
    /// <exception cref="InvalidDataException">The body is not gRPC framing (a Compressed-Flag other than 0 or 1).</exception>
    public static async ValueTask<GrpcResponseReader> ReadAsync(Stream content, TokenTimes tokens, bool streamed, TimeProvider time, CancellationToken cancellationToken)
    {
        var handler = new GrpcResponseReader(tokens, streamed);
        using var parser = new GrpcMessageReader(HttpSender.MaxMessageBytes);
        var buffer = ArrayPool<byte>.Shared.Rent(ReadBufferSize);
        try
        {
            while (true)
            {
                var read = await content.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    return handler;
                }

                handler._now = time.GetTimestamp();
                parser.Append(buffer.AsSpan(0, read), handler);
                if (parser.IsFaulted)
                {
                    throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture, $"not gRPC framing at byte {parser.BytesConsumed} of the response (a Compressed-Flag other than 0 or 1)"));
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <inheritdoc/>
    public void OnMessage(in GrpcMessage message)
    {
        Count();
        if (!_streamed && !message.IsCompressed)
        {
            UnaryTokens = ReadVarintField(message.Payload, 2);
        }
    }

    /// <inheritdoc/>
    public void OnMessageSkipped(long length, bool isCompressed, long offset) => Count();

    private void Count()
    {
        Messages++;
        if (FirstMessageTimestamp == 0)
        {
            FirstMessageTimestamp = _now;
        }

        if (_streamed)
        {
            _tokens.Add(_now);
        }
    }

    /// <summary>The value of varint field <paramref name="field"/> at the top level of a protobuf message, or -1.</summary>
    internal static int ReadVarintField(ReadOnlySpan<byte> message, int field)
    {
        var i = 0;
        while (i < message.Length)
        {
            var key = ReadVarint(message, ref i);
            if (key < 0)
            {
                return -1;
            }

            var wire = (int)(key & 7);
            var number = (int)(key >> 3);
            switch (wire)
            {
                case 0:
                    var value = ReadVarint(message, ref i);
                    if (number == field)
                    {
                        return (int)value;
                    }

                    break;
                case 1:
                    i += 8;
                    break;
                case 2:
                    var length = ReadVarint(message, ref i);
                    if (length < 0)
                    {
                        return -1;
                    }

                    i += (int)length;
                    break;
                case 5:
                    i += 4;
                    break;
                default:
                    return -1;
            }
        }

        return -1;

        static long ReadVarint(ReadOnlySpan<byte> s, ref int i)
        {
            long result = 0;
            for (var shift = 0; shift < 64 && i < s.Length; shift += 7)
            {
                var b = s[i++];
                result |= (long)(b & 0x7F) << shift;
                if ((b & 0x80) == 0)
                {
                    return result;
                }
            }

            return -1;
        }
    }
}

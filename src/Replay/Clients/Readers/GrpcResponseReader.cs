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
            UnaryTokens = HttpSender.ReadVarintField(message.Payload, 2);
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
}

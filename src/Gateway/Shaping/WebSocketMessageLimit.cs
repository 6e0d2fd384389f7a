using Contracts.Wire;
using Gateway.Forwarding;

namespace Gateway.Shaping;

/// <summary>
/// Limits the client messages on one proxied WebSocket connection (a WebSocket policy's <c>MessagesPerConnection</c>).
/// The shared <see cref="Contracts.Streams.WebSocketFrameReader"/> follows the client's frames as they pass
/// (<see cref="WebSocketFrameBoundaries"/>) and each frame that starts a data message is counted; the first byte of
/// the message over the limit is never forwarded. Instead the client gets a close frame, 1008 (policy violation) with a
/// reason naming the policy (<see cref="GatewayCloseReasons.MessageLimit"/>), written between two of the server's
/// frames (never inside one), and the connection ends.
/// </summary>
internal static class WebSocketMessageLimit
{
    /// <summary>A connection filter (<see cref="Exchange.ExchangeContext.FilterConnection"/>) admitting at most <paramref name="limit"/> client messages.</summary>
    public static Func<Stream, Stream> Filter(int limit, string policy, Action onExceeded) =>
        stream => new LimitedStream(stream, limit, policy, onExceeded);

    private sealed class LimitedStream : WebSocketFilterStream
    {
        private readonly int _limit;
        private readonly string _policy;
        private readonly Action _onExceeded;
        private readonly Func<byte, bool> _admit;
        private int _messages;
        private volatile bool _exceeded;
        private bool _closeSent;

        public LimitedStream(Stream inner, int limit, string policy, Action onExceeded)
            : base(inner)
        {
            _limit = limit;
            _policy = policy;
            _onExceeded = onExceeded;
            _admit = Admit;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_exceeded)
            {
                return 0;
            }

            var read = await Inner.ReadAsync(buffer, cancellationToken);
            var allowed = FromClient.Advance(buffer[..read], _admit);
            if (allowed < read)
            {
                _exceeded = true;
                _onExceeded();
                await SendCloseWhenBetweenFramesAsync(cancellationToken);
            }

            return allowed;
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await WriteLock.WaitAsync(cancellationToken);
            try
            {
                if (_closeSent)
                {
                    return; // the connection is closing; the server's late frames are not delivered
                }

                await Inner.WriteAsync(buffer, cancellationToken);
                ToClient.Advance(buffer.Span);
                if (_exceeded && ToClient.AtBoundary)
                {
                    await WriteCloseAsync(cancellationToken);
                }
            }
            finally
            {
                WriteLock.Release();
            }
        }

        /// <summary>
        /// Whether a client frame may pass, from its first byte (at a frame boundary the reader found): a frame that starts
        /// a text or binary message (RFC 6455 §5.6) counts against the limit; continuations and control frames pass.
        /// </summary>
        private bool Admit(byte first) => (first & 0x0F) is not (1 or 2) || ++_messages <= _limit;

        private async Task SendCloseWhenBetweenFramesAsync(CancellationToken cancellationToken)
        {
            await WriteLock.WaitAsync(cancellationToken);
            try
            {
                if (!_closeSent && ToClient.AtBoundary)
                {
                    await WriteCloseAsync(cancellationToken);
                }
            }
            finally
            {
                WriteLock.Release();
            }
        }

        private async Task WriteCloseAsync(CancellationToken cancellationToken)
        {
            await WriteFrameAsync(WebSocketCloseFrame.Create(GatewayCloseReason.PolicyViolation, GatewayCloseReasons.MessageLimit(_limit, _policy), masked: false), cancellationToken);
            _closeSent = true;
        }
    }
}

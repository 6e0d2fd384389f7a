using Contracts.Wire;
using Gateway.Forwarding;
using Microsoft.AspNetCore.Http.Features;

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

    private sealed class LimitedStream : Stream
    {
        private readonly Stream _inner;
        private readonly int _limit;
        private readonly string _policy;
        private readonly Action _onExceeded;
        private readonly SemaphoreSlim _write = new(1, 1);
        private readonly WebSocketFrameBoundaries _in = new();
        private readonly WebSocketFrameBoundaries _out = new();
        private readonly Func<byte, bool> _admit;
        private int _messages;
        private volatile bool _exceeded;
        private bool _closeSent;

        public LimitedStream(Stream inner, int limit, string policy, Action onExceeded)
        {
            _inner = inner;
            _limit = limit;
            _policy = policy;
            _onExceeded = onExceeded;
            _admit = Admit;
        }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_exceeded)
            {
                return 0;
            }

            var read = await _inner.ReadAsync(buffer, cancellationToken);
            var allowed = _in.Advance(buffer[..read], _admit);
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
            await _write.WaitAsync(cancellationToken);
            try
            {
                if (_closeSent)
                {
                    return; // the connection is closing; the server's late frames are not delivered
                }

                await _inner.WriteAsync(buffer, cancellationToken);
                _out.Advance(buffer.Span);
                if (_exceeded && _out.AtBoundary)
                {
                    await WriteCloseAsync(cancellationToken);
                }
            }
            finally
            {
                _write.Release();
            }
        }

        /// <summary>
        /// Whether a client frame may pass, from its first byte (at a frame boundary the reader found): a frame that starts
        /// a text or binary message (RFC 6455 §5.6) counts against the limit; continuations and control frames pass.
        /// </summary>
        private bool Admit(byte first) => (first & 0x0F) is not (1 or 2) || ++_messages <= _limit;

        private async Task SendCloseWhenBetweenFramesAsync(CancellationToken cancellationToken)
        {
            await _write.WaitAsync(cancellationToken);
            try
            {
                if (!_closeSent && _out.AtBoundary)
                {
                    await WriteCloseAsync(cancellationToken);
                }
            }
            finally
            {
                _write.Release();
            }
        }

        private async Task WriteCloseAsync(CancellationToken cancellationToken)
        {
            var frame = WebSocketCloseFrame.Create(GatewayCloseReason.PolicyViolation, GatewayCloseReasons.MessageLimit(_limit, _policy), masked: false);
            await _inner.WriteAsync(frame, cancellationToken);
            await _inner.FlushAsync(cancellationToken);
            _closeSent = true;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count, default).GetAwaiter().GetResult();

        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer, offset, count, default).GetAwaiter().GetResult();

        public override Task FlushAsync(CancellationToken cancellationToken) => _inner.FlushAsync(cancellationToken);

        public override void Flush() => _inner.Flush();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _inner.Dispose();
                _write.Dispose();
                _in.Dispose();
                _out.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}

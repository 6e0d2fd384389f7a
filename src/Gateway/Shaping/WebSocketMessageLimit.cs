using System.Buffers.Binary;
using System.Text;
using Microsoft.AspNetCore.Http.Features;

namespace Gateway.Shaping;

/// <summary>
/// Limits the client messages on one proxied WebSocket connection (a WebSocket policy's <c>MessagesPerConnection</c>).
/// It reads frame headers as the client's bytes pass (RFC 6455 §5.2) and counts data messages; the first byte of the
/// message over the limit is never forwarded. Instead the client gets a close frame, code 1008 (policy violation) with
/// a reason naming the policy, written between two of the server's frames (never inside one), and the connection ends.
/// </summary>
internal sealed class WebSocketMessageLimit(IHttpUpgradeFeature inner, int limit, string policy, Action onExceeded) : IHttpUpgradeFeature
{
    public bool IsUpgradableRequest => inner.IsUpgradableRequest;

    public async Task<Stream> UpgradeAsync() => new LimitedStream(await inner.UpgradeAsync(), limit, policy, onExceeded);

    private sealed class LimitedStream(Stream inner, int limit, string policy, Action onExceeded) : Stream
    {
        private readonly SemaphoreSlim _write = new(1, 1);
        private readonly FrameCursor _in = new();
        private readonly FrameCursor _out = new();
        private int _messages;
        private volatile bool _exceeded;
        private bool _closeSent;

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

            var read = await inner.ReadAsync(buffer, cancellationToken);
            var allowed = _in.Advance(buffer.Span[..read], isNewMessage =>
            {
                if (isNewMessage && ++_messages > limit)
                {
                    return false;
                }

                return true;
            });

            if (allowed < read)
            {
                _exceeded = true;
                onExceeded();
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

                await inner.WriteAsync(buffer, cancellationToken);
                _out.Advance(buffer.Span, static _ => true);
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
            var reason = Encoding.UTF8.GetBytes($"message limit {limit} per connection reached (policy {policy})");
            if (reason.Length > 123)
            {
                reason = reason[..123];
            }

            var frame = new byte[4 + reason.Length];
            frame[0] = 0x88; // FIN + close
            frame[1] = (byte)(2 + reason.Length);
            BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(2), 1008);
            reason.CopyTo(frame, 4);
            await inner.WriteAsync(frame, cancellationToken);
            await inner.FlushAsync(cancellationToken);
            _closeSent = true;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count, default).GetAwaiter().GetResult();

        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer, offset, count, default).GetAwaiter().GetResult();

        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

        public override void Flush() => inner.Flush();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
                _write.Dispose();
            }

            base.Dispose(disposing);
        }
    }

    /// <summary>Follows frame boundaries in one direction without copying payloads.</summary>
    private sealed class FrameCursor
    {
        private readonly byte[] _header = new byte[14];
        private int _headerCount;
        private int _headerNeeded = 2;
        private long _remaining;

        /// <summary>True between frames.</summary>
        public bool AtBoundary => _headerCount == 0 && _remaining == 0;

        /// <summary>
        /// Advances over <paramref name="data"/>. At each frame start <paramref name="admit"/> is asked (with whether the frame
        /// starts a new data message); when it says no, returns the number of bytes before that frame.
        /// </summary>
        public int Advance(ReadOnlySpan<byte> data, Func<bool, bool> admit)
        {
            var offset = 0;
            while (offset < data.Length)
            {
                if (_remaining > 0)
                {
                    var skip = (int)Math.Min(_remaining, data.Length - offset);
                    _remaining -= skip;
                    offset += skip;
                    continue;
                }

                var frameStart = offset - _headerCount;
                var take = Math.Min(_headerNeeded - _headerCount, data.Length - offset);
                data.Slice(offset, take).CopyTo(_header.AsSpan(_headerCount));
                _headerCount += take;
                offset += take;
                if (_headerCount < _headerNeeded)
                {
                    continue;
                }

                if (_headerNeeded == 2)
                {
                    var len7 = _header[1] & 0x7F;
                    var isMasked = (_header[1] & 0x80) != 0;
                    _headerNeeded = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (isMasked ? 4 : 0);
                    if (_headerCount < _headerNeeded)
                    {
                        continue;
                    }
                }

                var opcode = _header[0] & 0x0F;
                var newMessage = opcode is 1 or 2;
                if (!admit(newMessage))
                {
                    return Math.Max(0, frameStart);
                }

                var l7 = _header[1] & 0x7F;
                _remaining = l7 switch
                {
                    126 => BinaryPrimitives.ReadUInt16BigEndian(_header.AsSpan(2)),
                    127 => (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(_header.AsSpan(2)), long.MaxValue),
                    _ => l7,
                };
                _headerCount = 0;
                _headerNeeded = 2;
            }

            return data.Length;
        }
    }
}

using Contracts.Wire;
using Microsoft.AspNetCore.Http.Features;

namespace Gateway.Forwarding;

/// <summary>
/// Closes a proxied WebSocket connection that has been silent in both directions for
/// <c>Gateway:Limits:WebSocketIdleTimeout</c>, cleanly on both sides: the client gets a close frame 1001 (going away,
/// RFC 6455 §7.4.1) with a reason naming the timeout (<see cref="GatewayCloseReasons.IdleTimeout"/>), written between two
/// of the server's frames; the backend gets the same close frame, masked as a client's (§5.3), handed to YARP as if the
/// client had sent it, between two of the client's frames, and then the end of the client's stream. YARP then ends both
/// copies without an error, so an idle close is never reported as a backend failure; the backend's own close frame that
/// answers is not passed on (the client already has one).
/// </summary>
/// <remarks>
/// Installed by <see cref="ForwardStep"/> on the client's side of every WebSocket session (an HTTP/1.1 upgrade or an
/// HTTP/2 extended CONNECT), closest to YARP; it sets
/// YARP's own activity timeout above the idle timeout, so this close always comes first. Time comes from the injected
/// <see cref="TimeProvider"/>: one timer per connection, re-armed for the time left whenever it fires early.
/// </remarks>
internal static class WebSocketIdleTimeout
{
    /// <summary>A connection filter (<see cref="Exchange.ExchangeContext.FilterConnection"/>) closing the connection after <paramref name="idleTimeout"/> of silence.</summary>
    /// <param name="idleTimeout">Silence in both directions after which the gateway closes the session.</param>
    /// <param name="time">The clock.</param>
    /// <param name="onIdleClose">Called once when the gateway closes the session for idleness.</param>
    /// <param name="onClosed">Called once when a close frame has passed, from either side (the closing handshake began), or null.</param>
    public static Func<Stream, Stream> Filter(TimeSpan idleTimeout, TimeProvider time, Action onIdleClose, Action? onClosed = null) =>
        stream => new IdleStream(stream, idleTimeout, time, onIdleClose, onClosed);

    /// <summary>The client's upgraded connection, as YARP reads and writes it.</summary>
    internal sealed class IdleStream : WebSocketFilterStream
    {
        private readonly TimeSpan _idleTimeout;
        private readonly TimeProvider _time;
        private readonly Action _onIdleClose;
        private readonly Action? _onClosed;
        private int _handshakeDone;
        private readonly ITimer _timer;
        private readonly CancellationTokenSource _idle = new();
        private readonly string _reason;
        private CancellationTokenSource? _linked;
        private CancellationToken _linkedFor;
        private long _lastActivity;
        private byte[]? _toBackend; // the masked close frame, while it is being handed to YARP
        private int _toBackendSent;
        private bool _readEnded;
        private bool _closeSentToClient;
        private int _closing;
        private int _stopped;

        public IdleStream(Stream inner, TimeSpan idleTimeout, TimeProvider time, Action onIdleClose, Action? onClosed = null)
            : base(inner)
        {
            _idleTimeout = idleTimeout;
            _time = time;
            _onIdleClose = onIdleClose;
            _onClosed = onClosed;
            _reason = GatewayCloseReasons.IdleTimeout(idleTimeout);
            _lastActivity = time.GetTimestamp();
            _timer = time.CreateTimer(static s => ((IdleStream)s!).OnTimer(), this, idleTimeout, Timeout.InfiniteTimeSpan);
        }

        /// <summary>Whether the idle timeout closed the connection.</summary>
        public bool ClosedIdle => Volatile.Read(ref _closing) != 0;

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (ClosedIdle)
            {
                return ReadClose(buffer);
            }

            int read;
            try
            {
                read = await Inner.ReadAsync(buffer, Linked(cancellationToken));
            }
            catch (OperationCanceledException) when (_idle.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                return ReadClose(buffer);
            }
            catch
            {
                Stop(); // the connection failed: it can no longer go idle
                throw;
            }

            if (read == 0)
            {
                if (!buffer.IsEmpty)
                {
                    Stop(); // the client's end of stream (a zero-byte read only says data is ready)
                }

                return 0;
            }

            if (ClosedIdle && FromClient.AtBoundary)
            {
                // The client spoke just as the connection was closed: from here on the backend gets the close instead.
                return ReadClose(buffer);
            }

            Touch();
            FromClient.Advance(buffer.Span[..read]);
            if (FromClient.CloseSeen)
            {
                Stop(); // the client began the closing handshake: the connection is ending, not idle
                NoteHandshake();
            }

            return read;
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await WriteLock.WaitAsync(cancellationToken);
            try
            {
                if (_closeSentToClient)
                {
                    return; // the backend's answer to the close the gateway sent: the client already has a close frame
                }

                if (ClosedIdle && ToClient.AtBoundary)
                {
                    // Closing for idleness, and the backend's bytes came first to the lock (its answer to the close the
                    // gateway just sent it, typically a 1000): the client gets the gateway's 1001 first, and what the backend
                    // sends after the decision is not forwarded. Before, this race gave the client the backend's 1000 now
                    // and then (seen under load in WebSocketHttp2RecordingTests).
                    await WriteCloseAsync(cancellationToken);
                    return;
                }

                Touch();
                try
                {
                    await Inner.WriteAsync(buffer, cancellationToken);
                }
                catch
                {
                    Stop();
                    throw;
                }

                ToClient.Advance(buffer.Span);
                if (ToClient.CloseSeen && !ClosedIdle)
                {
                    Stop(); // the backend began the closing handshake
                    NoteHandshake();
                }

                if (ClosedIdle && ToClient.AtBoundary)
                {
                    await WriteCloseAsync(cancellationToken);
                }
            }
            finally
            {
                WriteLock.Release();
            }
        }

        /// <summary>Reports once that the closing handshake began: a close frame passed, from the client or from the backend.</summary>
        private void NoteHandshake()
        {
            if (_onClosed is { } closed && Interlocked.Exchange(ref _handshakeDone, 1) == 0)
            {
                closed();
            }
        }

        /// <summary>Closes the connection now, as the timer does when it finds it idle (a seam for tests).</summary>
        internal Task CloseIdleAsync()
        {
            if (Volatile.Read(ref _stopped) != 0 || Interlocked.Exchange(ref _closing, 1) != 0)
            {
                return Task.CompletedTask;
            }

            _timer.Dispose();
            _onIdleClose();
            try
            {
                _idle.Cancel(); // a pending read hands YARP the close frame for the backend
            }
            catch (ObjectDisposedException)
            {
                return Task.CompletedTask; // the connection ended meanwhile
            }

            return SendCloseToClientAsync();
        }

        private void OnTimer()
        {
            if (Volatile.Read(ref _stopped) != 0)
            {
                return;
            }

            var idle = _time.GetElapsedTime(Volatile.Read(ref _lastActivity));
            if (idle < _idleTimeout)
            {
                try
                {
                    _timer.Change(_idleTimeout - idle, Timeout.InfiniteTimeSpan); // re-armed for the time left
                }
                catch (ObjectDisposedException)
                {
                    // stopped meanwhile
                }

                return;
            }

            _ = CloseIdleAsync();
        }

        private void Touch() => Volatile.Write(ref _lastActivity, _time.GetTimestamp());

        /// <summary>The connection ends (or is closing) by itself: the idle timer is no longer needed.</summary>
        private void Stop()
        {
            if (Interlocked.Exchange(ref _stopped, 1) == 0)
            {
                _timer.Dispose();
            }
        }

        private CancellationToken Linked(CancellationToken token)
        {
            if (!token.CanBeCanceled)
            {
                return _idle.Token;
            }

            // YARP passes one token for the whole copy: one linked source per connection, not per read.
            if (_linked is null || _linkedFor != token)
            {
                _linked?.Dispose();
                _linked = CancellationTokenSource.CreateLinkedTokenSource(token, _idle.Token);
                _linkedFor = token;
            }

            return _linked.Token;
        }

        /// <summary>Hands YARP the masked close frame (over as many reads as its buffer needs), then the end of the stream.</summary>
        private int ReadClose(Memory<byte> buffer)
        {
            if (_readEnded || buffer.IsEmpty)
            {
                return 0;
            }

            if (_toBackend is null)
            {
                if (!FromClient.AtBoundary)
                {
                    _readEnded = true; // inside one of the client's frames: no frame can be put in; the stream just ends
                    return 0;
                }

                _toBackend = WebSocketCloseFrame.Create(GatewayCloseReason.GoingAway, _reason, masked: true);
            }

            var n = Math.Min(buffer.Length, _toBackend.Length - _toBackendSent);
            _toBackend.AsSpan(_toBackendSent, n).CopyTo(buffer.Span);
            _toBackendSent += n;
            _readEnded = _toBackendSent == _toBackend.Length;
            return n;
        }

        private async Task SendCloseToClientAsync()
        {
            try
            {
                await WriteLock.WaitAsync();
                try
                {
                    if (!_closeSentToClient && ToClient.AtBoundary)
                    {
                        await WriteCloseAsync(CancellationToken.None);
                    }
                }
                finally
                {
                    WriteLock.Release();
                }
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException)
            {
                // The client went away meanwhile: nothing to tell it.
            }
        }

        private async Task WriteCloseAsync(CancellationToken cancellationToken)
        {
            _closeSentToClient = true;
            await WriteFrameAsync(WebSocketCloseFrame.Create(GatewayCloseReason.GoingAway, _reason, masked: false), cancellationToken);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                Stop();
                _linked?.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}

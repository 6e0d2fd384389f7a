using System.Buffers;
using System.Globalization;
using System.Net.Sockets;
using System.Net.WebSockets;
using Replay.Measurement;
using Replay.Sources;

namespace Replay.Clients;

/// <summary>
/// WebSocket sessions: one connection per recorded connection (or template session), its turns sent in order on it,
/// opened by <see cref="WebSocketHandshake"/>.
/// A turn ends with the server's message holding <c>"done"</c> (success) or <c>"error"</c> (a failure, refused when
/// its code says the server is full or limited); every other message is a token.
/// </summary>
internal sealed class WebSocketSender : IDisposable
{
    /// <summary>Receive buffer per connection and per turn (grown when a message is larger): small, so 10,000 open sessions stay small.</summary>
    private const int ReceiveBufferSize = 512;

    private static readonly string[] s_refusalCodes = ["queue_full", "rate_limited", "too_many_requests", "overloaded", "concurrency_limit", "refused"];

    private readonly ClientSettings _settings;
    private readonly TimeProvider _time;
    private readonly CancellationPool _cancellations = new();

    /// <summary>Creates the sender.</summary>
    public WebSocketSender(ClientSettings settings, TimeProvider time)
    {
        _settings = settings;
        _time = time;
    }

    /// <summary>Opens a connection for <paramref name="request"/>; on failure returns null and the failure outcome.</summary>
    public async ValueTask<(WebSocket? Socket, Outcome Failure)> ConnectAsync(PlannedRequest request, CancellationToken runToken)
    {
        var target = _settings.WebSocketTarget ?? throw new InvalidOperationException("No WebSocket target.");
        var headers = new List<KeyValuePair<string, string>>();
        foreach (var h in HeaderFilter.Apply(request.Headers, _settings.DropHeaders, _settings.HeaderOverrides))
        {
            if (!h.Key.StartsWith("content-", StringComparison.OrdinalIgnoreCase) && !h.Key.StartsWith("sec-websocket", StringComparison.OrdinalIgnoreCase)
                && !h.Key.Equals("upgrade", StringComparison.OrdinalIgnoreCase) && !h.Key.Equals("connection", StringComparison.OrdinalIgnoreCase)
                && !h.Key.Equals("host", StringComparison.OrdinalIgnoreCase))
            {
                headers.Add(h);
            }
        }

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(runToken);
        cts.CancelAfter(_settings.Timeout);
        try
        {
            var socket = await WebSocketHandshake.ConnectAsync(new Uri(target, request.PathAndQuery), headers, _settings.Insecure, cts.Token).ConfigureAwait(false);
            return (socket, default);
        }
        catch (WebSocketUpgradeRefusedException refused) when (refused.Status > 0)
        {
            // An answer with an HTTP status, like an HTTP request's: a 429 (or a gateway's 503) is a refusal by a limit.
            return (null, new Outcome
            {
                GrpcStatus = -1,
                HttpStatus = refused.Status,
                Failure = refused.IsRefusal ? FailureKind.Refused : FailureKind.Status,
                StatusKey = refused.Status.ToString(CultureInfo.InvariantCulture),
                Limit = refused.IsRefusal ? refused.Limit : null,
                Error = refused.Message,
                EndTimestamp = _time.GetTimestamp(),
            });
        }
        catch (Exception ex) when (ex is WebSocketException or SocketException or IOException or OperationCanceledException or System.Security.Authentication.AuthenticationException)
        {
            var timeout = ex is OperationCanceledException && !runToken.IsCancellationRequested;
            var failure = new Outcome
            {
                GrpcStatus = -1,
                Failure = timeout ? FailureKind.Timeout : FailureKind.Connection,
                StatusKey = timeout ? StatusKeys.Timeout : StatusKeys.ConnectionError,
                Error = timeout ? "WebSocket connect timed out" : HttpSender.Describe(ex),
                EndTimestamp = _time.GetTimestamp(),
            };
            return (null, failure);
        }
    }

    /// <summary>Sends one turn and reads the reply up to its <c>done</c> (or <c>error</c>) message, stamping each token.</summary>
    public async ValueTask<Outcome> SendTurnAsync(WebSocket socket, WebSocketTurn turn, TokenTimes tokens, CancellationToken runToken)
    {
        tokens.Clear();
        var outcome = new Outcome { GrpcStatus = -1, Streamed = true, HttpStatus = 101 };
        var buffer = ArrayPool<byte>.Shared.Rent(ReceiveBufferSize);
        var cts = _cancellations.Rent(_settings.Timeout);
        var registration = runToken.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), cts);
        try
        {
            await socket.SendAsync(turn.Payload, turn.Binary ? WebSocketMessageType.Binary : WebSocketMessageType.Text, true, cts.Token).ConfigureAwait(false);
            outcome.MessagesSent = 1;
            while (true)
            {
                var length = 0;
                ValueWebSocketReceiveResult result;
                do
                {
                    if (length == buffer.Length)
                    {
                        if (length >= HttpSender.MaxMessageBytes)
                        {
                            throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture, $"a WebSocket message longer than {HttpSender.MaxMessageBytes} bytes"));
                        }

                        var bigger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                        Buffer.BlockCopy(buffer, 0, bigger, 0, length);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = bigger;
                    }

                    result = await socket.ReceiveAsync(buffer.AsMemory(length), cts.Token).ConfigureAwait(false);
                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        if (!ClosedByLimit(socket, ref outcome))
                        {
                            outcome.Failure = FailureKind.Connection;
                            outcome.StatusKey = StatusKeys.ConnectionError;
                            outcome.Error = "the server closed the WebSocket before the reply ended";
                        }

                        return Finish(ref outcome, tokens);
                    }

                    length += result.Count;
                }
                while (!result.EndOfMessage);

                var now = _time.GetTimestamp();
                var message = buffer.AsSpan(0, length);
                outcome.MessagesReceived++;
                var code = "error";
                var reply = result.MessageType == WebSocketMessageType.Text ? WebSocketReplies.Classify(message, out code) : WebSocketReply.Part;
                if (reply == WebSocketReply.Done)
                {
                    outcome.Failure = FailureKind.None;
                    outcome.StatusKey = StatusKeys.WebSocketOk;
                    outcome.Tokens = tokens.Count;
                    return Finish(ref outcome, tokens);
                }

                if (reply == WebSocketReply.Error)
                {
                    outcome.Failure = Array.IndexOf(s_refusalCodes, code) >= 0 ? FailureKind.Refused : FailureKind.Status;
                    outcome.StatusKey = "ws:" + code;
                    outcome.Error = System.Text.Encoding.UTF8.GetString(message);
                    return Finish(ref outcome, tokens);
                }

                tokens.Add(now);
            }
        }
        catch (OperationCanceledException) when (!runToken.IsCancellationRequested)
        {
            outcome.Failure = FailureKind.Timeout;
            outcome.StatusKey = StatusKeys.Timeout;
            outcome.Error = string.Create(CultureInfo.InvariantCulture, $"no complete reply within {_settings.Timeout.TotalMilliseconds} ms");
            socket.Abort();
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException or InvalidDataException)
        {
            if (!ClosedByLimit(socket, ref outcome))
            {
                outcome.Failure = FailureKind.Connection;
                outcome.StatusKey = StatusKeys.ConnectionError;
                outcome.Error = HttpSender.Describe(ex);
            }

            socket.Abort();
        }
        finally
        {
            registration.Dispose();
            _cancellations.Return(cts);
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return Finish(ref outcome, tokens);
    }

    /// <summary>
    /// Frames mode: sends the client messages of <paramref name="request"/> intact (text and binary) at their recorded
    /// offsets, reads the server's frames as they come, then closes as recorded: the recorded close status at its
    /// offset, or, when the server closed first in the recording, waits for the server's close and answers it. The
    /// connection is one request: it succeeds when the close handshake completes with a normal status (1000, 1001,
    /// none, or the recorded one), and fails when the connection breaks, the server closes before every message was
    /// sent, or no close comes within <c>--timeout</c> of ours.
    /// </summary>
    /// <param name="socket">The open connection.</param>
    /// <param name="request">The connection's messages (<see cref="PlannedRequest.Turns"/> with offsets) and close.</param>
    /// <param name="start">The timestamp of offset 0: the connection's intended time, or when it opened if that was later than its first message's offset.</param>
    /// <param name="timer">Waits that never end early.</param>
    /// <param name="tokens">Cleared; frames mode stamps no tokens (a generic server's messages are not tokens).</param>
    /// <param name="runToken">The run's cancellation.</param>
    public async ValueTask<Outcome> RunFramesAsync(WebSocket socket, PlannedRequest request, long start, Scheduling.FineTimer timer, TokenTimes tokens, CancellationToken runToken)
    {
        tokens.Clear();
        var outcome = new Outcome { GrpcStatus = -1, HttpStatus = 101, StatusKey = StatusKeys.WebSocketOk };
        var frames = request.Turns ?? [];
        var close = request.Close;
        using var receiveCts = CancellationTokenSource.CreateLinkedTokenSource(runToken);
        var receiver = new FrameReceiver(_time);
        var receiving = receiver.RunAsync(socket, receiveCts.Token);
        var unsent = frames.Count;
        var closeSent = false;
        try
        {
            foreach (var frame in frames)
            {
                await timer.WaitUntilAsync(start + Ticks(frame.OffsetMs), runToken).ConfigureAwait(false);
                if (socket.State != WebSocketState.Open)
                {
                    break;
                }

                await SendBoundedAsync(socket, frame, runToken).ConfigureAwait(false);
                outcome.MessagesSent++;
                unsent--;
            }

            if (unsent == 0 && socket.State == WebSocketState.Open)
            {
                if (close is { ByServer: true })
                {
                    // The server ended the recorded connection: wait for its close, then answer it below.
                    await receiving.WaitAsync(_settings.Timeout, runToken).ConfigureAwait(false);
                }
                else
                {
                    var lastOffset = frames.Count > 0 ? frames[^1].OffsetMs : 0;
                    await timer.WaitUntilAsync(start + Ticks(Math.Max(close?.OffsetMs ?? lastOffset, lastOffset)), runToken).ConfigureAwait(false);
                }
            }

            if (socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(runToken);
                cts.CancelAfter(_settings.Timeout);
                // Ours: the recorded status and reason. An answer to the server's close: its status echoed (RFC 6455 §5.5.1).
                closeSent = socket.State == WebSocketState.Open;
                var (status, reason) = closeSent
                    ? ((WebSocketCloseStatus)(close?.Code ?? 1000), close?.Reason)
                    : (socket.CloseStatus is { } received && (int)received != 1005 ? received : WebSocketCloseStatus.NormalClosure, (string?)null);
                await socket.CloseOutputAsync(status, reason, cts.Token).ConfigureAwait(false);
            }

            // The server's close (or the end of the connection) ends the exchange.
            await receiving.WaitAsync(_settings.Timeout, runToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            outcome.Failure = FailureKind.Timeout;
            outcome.StatusKey = StatusKeys.Timeout;
            outcome.Error = string.Create(CultureInfo.InvariantCulture, $"no close from the server within {_settings.Timeout.TotalMilliseconds} ms {(closeSent ? "of ours" : "after the last message")}");
            socket.Abort();
        }
        catch (OperationCanceledException) when (!runToken.IsCancellationRequested)
        {
            outcome.Failure = FailureKind.Timeout;
            outcome.StatusKey = StatusKeys.Timeout;
            outcome.Error = string.Create(CultureInfo.InvariantCulture, $"a message or the close could not be sent within {_settings.Timeout.TotalMilliseconds} ms");
            socket.Abort();
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or ObjectDisposedException)
        {
            if (!ClosedByLimit(socket, ref outcome))
            {
                outcome.Failure = FailureKind.Connection;
                outcome.StatusKey = StatusKeys.ConnectionError;
                outcome.Error = HttpSender.Describe(ex);
            }

            socket.Abort();
        }
        finally
        {
            await receiveCts.CancelAsync().ConfigureAwait(false);
            try
            {
                await receiving.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Ended by us.
            }
        }

        outcome.MessagesReceived = receiver.Received;
        outcome.FirstTokenTimestamp = receiver.FirstTimestamp;
        outcome.EndTimestamp = _time.GetTimestamp();
        if (outcome.Failure != FailureKind.None)
        {
            return outcome;
        }

        if (receiver.Error is { } error && !ClosedByLimit(socket, ref outcome))
        {
            outcome.Failure = FailureKind.Connection;
            outcome.StatusKey = StatusKeys.ConnectionError;
            outcome.Error = HttpSender.Describe(error);
        }
        else if (ClosedByLimit(socket, ref outcome))
        {
            // A limit closed it: refused.
        }
        else if (unsent > 0)
        {
            outcome.Failure = FailureKind.Connection;
            outcome.StatusKey = StatusKeys.ConnectionError;
            outcome.Error = string.Create(CultureInfo.InvariantCulture, $"the server closed the WebSocket ({(int?)socket.CloseStatus} {socket.CloseStatusDescription}) before {unsent} of {frames.Count} messages were sent");
        }
        else if (socket.CloseStatus is { } status && (int)status is not (1000 or 1001 or 1005) && (int)status != close?.Code)
        {
            outcome.Failure = FailureKind.Status;
            outcome.StatusKey = string.Create(CultureInfo.InvariantCulture, $"ws:close:{(int)status}");
            outcome.Error = string.Create(CultureInfo.InvariantCulture, $"the server closed the WebSocket with {(int)status} {socket.CloseStatusDescription}");
        }

        return outcome;
    }

    private async ValueTask SendBoundedAsync(WebSocket socket, WebSocketTurn frame, CancellationToken runToken)
    {
        var cts = _cancellations.Rent(_settings.Timeout);
        var registration = runToken.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), cts);
        try
        {
            await socket.SendAsync(frame.Payload, frame.Binary ? WebSocketMessageType.Binary : WebSocketMessageType.Text, true, cts.Token).ConfigureAwait(false);
        }
        finally
        {
            registration.Dispose();
            _cancellations.Return(cts);
        }
    }

    private long Ticks(double milliseconds) => (long)(milliseconds * _time.TimestampFrequency / 1000.0);

    /// <summary>Frames mode: reads the server's messages as they come until its close frame (or the connection ends), counting whole messages.</summary>
    private sealed class FrameReceiver(TimeProvider time)
    {
        public int Received;
        public long FirstTimestamp;
        public Exception? Error;

        public async Task RunAsync(WebSocket socket, CancellationToken cancellationToken)
        {
            await Task.Yield();
            var buffer = ArrayPool<byte>.Shared.Rent(ReceiveBufferSize);
            try
            {
                while (true)
                {
                    var result = await socket.ReceiveAsync(buffer.AsMemory(), cancellationToken).ConfigureAwait(false);
                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        return;
                    }

                    if (result.EndOfMessage)
                    {
                        if (Received++ == 0)
                        {
                            FirstTimestamp = time.GetTimestamp();
                        }
                    }
                }
            }
            catch (Exception ex) when (ex is WebSocketException or IOException or ObjectDisposedException)
            {
                Error = ex;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    /// <summary>
    /// Closes a connection politely: sends 1000 and waits for the server's close frame before the socket is closed, the
    /// closing handshake of RFC 6455 §7.1.1 (best effort, bounded by a second). Sending the close and dropping the
    /// connection at once, as this did before, left the server (or a gateway) a connection that vanished mid-handshake.
    /// </summary>
    public static async ValueTask CloseAsync(WebSocket socket)
    {
        try
        {
            if (socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, cts.Token).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            // Best effort: the server may be gone already.
        }
        finally
        {
            socket.Dispose();
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        // Connections belong to their sessions and are closed by them.
    }

    private Outcome Finish(ref Outcome outcome, TokenTimes tokens)
    {
        outcome.EndTimestamp = _time.GetTimestamp();
        if (tokens.Count > 0)
        {
            outcome.FirstTokenTimestamp = tokens.Span[0];
            outcome.LastTokenTimestamp = tokens.Span[^1];
        }

        return outcome;
    }

    /// <summary>
    /// Whether the server closed the connection because a limit refused it: close status 1013 (try again later:
    /// overload) or 1008 (policy violation: a rate or connection limit), as the gateway closes a refused WebSocket.
    /// Its reason reads <c>CODE: LIMIT; retry after …</c>; the limit is taken from it.
    /// </summary>
    internal static bool ClosedByLimit(WebSocket socket, ref Outcome outcome)
    {
        var status = (int?)socket.CloseStatus;
        if (status is not (1013 or 1008))
        {
            return false;
        }

        var reason = socket.CloseStatusDescription ?? string.Empty;
        outcome.Failure = FailureKind.Refused;
        outcome.StatusKey = status == 1013 ? "ws:1013" : "ws:1008";
        outcome.Limit = LimitFromCloseReason(reason);
        outcome.Error = string.Create(CultureInfo.InvariantCulture, $"closed by the server with {status}: {reason}");
        return true;
    }

    /// <summary>The limit in a close reason <c>CODE: LIMIT; retry after …</c>, or null when it names none.</summary>
    internal static string? LimitFromCloseReason(string reason)
    {
        var colon = reason.IndexOf(": ", StringComparison.Ordinal);
        if (colon < 0)
        {
            return null;
        }

        var rest = reason.AsSpan(colon + 2);
        var end = rest.IndexOf(';');
        var limit = (end < 0 ? rest : rest[..end]).Trim();
        return limit.IsEmpty ? null : limit.ToString();
    }
}

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
    private static ReadOnlySpan<byte> DoneKey => "\"done\""u8;
    private static ReadOnlySpan<byte> ErrorKey => "\"error\""u8;
    private static ReadOnlySpan<byte> CodeKey => "\"code\":\""u8;

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
                if (message.IndexOf(DoneKey) >= 0)
                {
                    outcome.Failure = FailureKind.None;
                    outcome.StatusKey = StatusKeys.WebSocketOk;
                    outcome.Tokens = tokens.Count;
                    return Finish(ref outcome, tokens);
                }

                if (message.IndexOf(ErrorKey) >= 0)
                {
                    var code = Code(message);
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

    /// <summary>Closes a connection politely (best effort, bounded by a second).</summary>
    public static async ValueTask CloseAsync(WebSocket socket)
    {
        try
        {
            if (socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, cts.Token).ConfigureAwait(false);
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

    private static string Code(ReadOnlySpan<byte> message)
    {
        var i = message.IndexOf(CodeKey);
        if (i < 0)
        {
            return "error";
        }

        var rest = message[(i + CodeKey.Length)..];
        var end = rest.IndexOf((byte)'"');
        return end <= 0 ? "error" : System.Text.Encoding.UTF8.GetString(rest[..end]);
    }
}

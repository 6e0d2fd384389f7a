using System.Net.WebSockets;
using Contracts.Wire;
using Grpc.Core;

namespace Gateway.Exchange;

/// <summary>
/// An answer the gateway gives itself instead of forwarding (a refusal, a bad request), decided by a step
/// (<see cref="ExchangeContext.Refuse"/>) and written by <see cref="ExchangeCompletion"/> in the protocol's terms: the
/// OpenAI-shaped JSON error for HTTP, trailers-only <c>grpc-status</c> for gRPC, an accepted WebSocket closed at once
/// with a close code and reason (1008 for a rate limit, 1013 "try again later" for overload) for a WebSocket upgrade.
/// </summary>
/// <param name="HttpStatus">HTTP status, e.g. 400, 429, 503.</param>
/// <param name="GrpcStatus">gRPC status for gRPC calls.</param>
/// <param name="Type">Error type (<c>rate_limited</c>, <c>overloaded</c>, <c>invalid_request</c>).</param>
/// <param name="Code">Machine-readable code of the rule that answered (<c>queue_full</c>, <c>invalid_header</c>).</param>
/// <param name="Message">A sentence for a human.</param>
/// <param name="RetryAfter">When set, <c>Retry-After</c> in whole seconds (rounded up, at least 1).</param>
/// <param name="Limit">When set, the <c>x-gateway-limit</c> header: the limit that refused the request.</param>
/// <param name="RefuseUpgrade">
/// When true, a WebSocket upgrade is answered with <paramref name="HttpStatus"/> and the JSON body, not accepted and
/// closed: a caller the gateway does not let in (401, 403) gets no WebSocket at all, as an HTTP client would not.
/// </param>
internal sealed record GatewayAnswer(int HttpStatus, StatusCode GrpcStatus, string Type, string Code, string Message, TimeSpan? RetryAfter = null, string? Limit = null,
    bool RefuseUpgrade = false)
{
    /// <summary>How long a refused WebSocket waits for the client's Close before the connection is dropped.</summary>
    private static readonly TimeSpan WebSocketCloseWait = TimeSpan.FromSeconds(2);

    /// <summary>A 400 for a request the gateway cannot forward as sent.</summary>
    public static GatewayAnswer BadRequest(string code, string message) =>
        new(StatusCodes.Status400BadRequest, StatusCode.InvalidArgument, GatewayErrorTypes.InvalidRequest, code, message);

    /// <summary>Writes the answer (see the type's remarks); does nothing when the client is gone.</summary>
    public async Task WriteAsync(HttpContext context, ExchangeContext exchange)
    {
        if (exchange.IsClientAbort)
        {
            return;
        }

        if (!RefuseUpgrade && exchange.Classification is { IsWebSocket: true } && context.WebSockets.IsWebSocketRequest && !context.Response.HasStarted)
        {
            await CloseWebSocketAsync(context, exchange);
            return;
        }

        await ErrorResponses.WriteAsync(context, HttpStatus, GrpcStatus, Type, Code, Message, RetryAfter, Limit);
    }

    /// <summary>
    /// A WebSocket client cannot read a refused handshake's body: the upgrade is accepted and closed with the reason.
    /// The closing handshake is completed (RFC 6455 §7.1.1: wait for the client's Close, bounded), so the client reads
    /// the reason before the TCP connection ends, even when it had a message in flight (discarded here).
    /// </summary>
    private async Task CloseWebSocketAsync(HttpContext context, ExchangeContext exchange)
    {
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        var text = new GatewayCloseReason(Code, Limit ?? Type, RetryAfter).Format();
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(exchange.ClientAborted);
        bounded.CancelAfter(WebSocketCloseWait);
        try
        {
            // 1013 "try again later" for an overload (503), 1008 "policy violation" for a rate limit or a bad request.
            var code = HttpStatus >= 500 ? GatewayCloseReason.TryAgainLater : GatewayCloseReason.PolicyViolation;
            // Recorded as the close unit it is, so a recording shows the refusal (stranger review of issue 16).
            exchange.Capture?.GatewayClosedWebSocket(code, text);
            exchange.MarkWebSocketClosed(); // a client that drops the connection after our close was refused, not an abort
            await socket.CloseAsync((WebSocketCloseStatus)code, text, bounded.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or IOException)
        {
            // The client did not answer the Close in time, or went away: the connection ends either way.
        }
    }
}

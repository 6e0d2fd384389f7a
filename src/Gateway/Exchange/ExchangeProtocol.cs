namespace Gateway.Exchange;

/// <summary>The protocol of an exchange, found once by the classification step (<see cref="ClassifyStep"/>).</summary>
internal enum ExchangeProtocol
{
    /// <summary>A plain HTTP request and response (JSON, or anything else).</summary>
    Http,

    /// <summary>An HTTP request answered with server-sent events (<c>Accept: text/event-stream</c>, or an OpenAI body with <c>"stream": true</c>).</summary>
    Sse,

    /// <summary>A gRPC call (<c>content-type: application/grpc</c>, HTTP/2).</summary>
    Grpc,

    /// <summary>A WebSocket session opened with an HTTP/1.1 upgrade (RFC 6455).</summary>
    WebSocket,

    /// <summary>A WebSocket session opened with an HTTP/2 extended CONNECT (RFC 8441).</summary>
    WebSocketHttp2,
}

/// <summary>Helpers over <see cref="ExchangeProtocol"/>.</summary>
internal static class ExchangeProtocols
{
    /// <summary>Whether the protocol is a WebSocket session, over HTTP/1.1 or HTTP/2.</summary>
    public static bool IsWebSocket(this ExchangeProtocol protocol) => protocol is ExchangeProtocol.WebSocket or ExchangeProtocol.WebSocketHttp2;

    /// <summary>
    /// The protocol of a request from its headers alone: gRPC by content type, WebSocket by <c>Upgrade: websocket</c>
    /// (HTTP/1.1) or an extended CONNECT with <c>:protocol websocket</c> (HTTP/2), SSE by <c>Accept: text/event-stream</c>;
    /// anything else is HTTP (an OpenAI body with <c>"stream": true</c> turns it into SSE once the body is read).
    /// </summary>
    public static ExchangeProtocol Of(HttpContext context)
    {
        var request = context.Request;
        if (context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpExtendedConnectFeature>() is { IsExtendedConnect: true } connect
            && string.Equals(connect.Protocol, "websocket", StringComparison.OrdinalIgnoreCase))
        {
            return ExchangeProtocol.WebSocketHttp2;
        }

        if (request.Headers.Upgrade is { Count: > 0 } upgrade && string.Equals(upgrade[0], "websocket", StringComparison.OrdinalIgnoreCase))
        {
            return ExchangeProtocol.WebSocket;
        }

        if (ErrorResponses.IsGrpc(request))
        {
            return ExchangeProtocol.Grpc;
        }

        return request.Headers.Accept is { Count: > 0 } accept && accept.ToString().Contains("text/event-stream", StringComparison.OrdinalIgnoreCase)
            ? ExchangeProtocol.Sse
            : ExchangeProtocol.Http;
    }
}

using System.Globalization;
using System.Text.Json;
using Contracts.Wire;
using Grpc.Core;

namespace Gateway.Exchange;

/// <summary>
/// Answers that the gateway itself gives (no route, timeout, a refusal), in the protocol's own terms: an
/// OpenAI-shaped JSON error for HTTP (<c>{"error":{"message","type","code"}}</c>, the shape LLM clients parse),
/// a trailers-only response with <c>grpc-status</c> and <c>grpc-message</c> for gRPC.
/// </summary>
internal static class ErrorResponses
{
    /// <summary>Whether the request is a gRPC call (content type <c>application/grpc</c>, with or without a suffix).</summary>
    public static bool IsGrpc(HttpRequest request) =>
        request.ContentType is { } ct && ct.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Writes an error answer unless the response has started (then the stream is aborted instead, since a
    /// client must never mistake a cut stream for a complete one).
    /// </summary>
    /// <param name="context">The request.</param>
    /// <param name="httpStatus">HTTP status for non-gRPC requests, e.g. 404, 429, 503, 504.</param>
    /// <param name="grpcStatus">gRPC status for gRPC calls, e.g. UNIMPLEMENTED, RESOURCE_EXHAUSTED.</param>
    /// <param name="type">Error type, e.g. <c>not_found</c>, <c>timeout</c>, <c>rate_limited</c>.</param>
    /// <param name="code">Machine-readable code that says which rule answered, e.g. <c>route_not_found</c>.</param>
    /// <param name="message">A sentence for a human.</param>
    /// <param name="retryAfter">When set, a <c>Retry-After</c> header in whole seconds (rounded up, at least 1).</param>
    /// <param name="limit">When set, an <c>x-gateway-limit</c> header naming the limit that refused the request.</param>
    public static Task WriteAsync(HttpContext context, int httpStatus, StatusCode grpcStatus, string type, string code, string message, TimeSpan? retryAfter = null, string? limit = null)
    {
        var response = context.Response;
        if (response.HasStarted)
        {
            context.Abort();
            return Task.CompletedTask;
        }

        response.Clear();
        if (retryAfter is { } ra)
        {
            response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(ra.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
        }

        response.Headers[GatewayHeaders.Error] = code;
        if (limit is not null)
        {
            response.Headers[GatewayHeaders.Limit] = limit;
        }

        if (IsGrpc(context.Request))
        {
            // Trailers-only response: HTTP 200, grpc-status in the headers, no body.
            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = "application/grpc";
            response.Headers["grpc-status"] = ((int)grpcStatus).ToString(CultureInfo.InvariantCulture);
            response.Headers["grpc-message"] = Uri.EscapeDataString(message);
            return Task.CompletedTask;
        }

        response.StatusCode = httpStatus;
        response.ContentType = "application/json";
        if (httpStatus == StatusCodes.Status401Unauthorized)
        {
            response.Headers.WWWAuthenticate = "Bearer"; // RFC 9110 §11.6.1: a 401 names its scheme (RFC 6750 for bearer keys and tokens)
        }

        // Not RequestAborted: a request timeout links it to its own token, and the answer to a timeout must still be written.
        var clientGone = context.GetExchange()?.ClientAborted ?? context.RequestAborted;
        return response.Body.WriteAsync(Serialize(type, code, message), clientGone).AsTask();
    }

    /// <summary>The JSON error body, UTF-8.</summary>
    public static byte[] Serialize(string type, string code, string message)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(128 + message.Length);
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteStartObject("error");
            w.WriteString("message", message);
            w.WriteString("type", type);
            w.WriteString("code", code);
            w.WriteEndObject();
            w.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }
}

using Gateway.Exchange;

namespace Gateway.Telemetry.GenAi;

/// <summary>
/// The GenAI operation of a request (<c>gen_ai.operation.name</c>, OpenTelemetry GenAI semantic conventions), from its
/// method, path and protocol: an LLM exchange is a <c>POST</c> of an OpenAI-style body to a path ending
/// <c>/chat/completions</c> (<see cref="Chat"/>), <c>/completions</c> (<see cref="TextCompletion"/>) or
/// <c>/embeddings</c> (<see cref="Embeddings"/>), or an <c>inference.v1</c> gRPC call to <c>Generate</c> or
/// <c>GenerateStream</c> (<see cref="TextCompletion"/>: a prompt in, text out). Anything else (a WebSocket session,
/// <c>GET /v1/models</c>, an admin call) is not an LLM exchange and gets no GenAI metrics.
/// </summary>
/// <remarks>
/// Decided from the path, not the body, so that the classification reads no body for it: a gateway without
/// <c>Gateway:Models</c> and without token policies still forwards bodies untouched and unread.
/// </remarks>
internal static class GenAiOperations
{
    /// <summary>Chat completion (OpenAI Chat API).</summary>
    public const string Chat = "chat";

    /// <summary>Text completion (OpenAI legacy Completions API, <c>inference.v1</c> Generate).</summary>
    public const string TextCompletion = "text_completion";

    /// <summary>Embeddings (OpenAI Create embeddings API).</summary>
    public const string Embeddings = "embeddings";

    /// <summary>The operation of a request, or null when it is not an LLM exchange.</summary>
    /// <param name="method">The HTTP method.</param>
    /// <param name="path">The request path.</param>
    /// <param name="protocol">The protocol the classification found from the headers.</param>
    public static string? Of(string method, PathString path, ExchangeProtocol protocol)
    {
        var value = path.Value;
        if (value is null || !HttpMethods.IsPost(method))
        {
            return null;
        }

        if (protocol == ExchangeProtocol.Grpc)
        {
            return value.StartsWith("/inference.v1.", StringComparison.Ordinal)
                && (value.EndsWith("/Generate", StringComparison.Ordinal) || value.EndsWith("/GenerateStream", StringComparison.Ordinal))
                ? TextCompletion
                : null;
        }

        if (protocol.IsWebSocket())
        {
            return null;
        }

        return value.EndsWith("/chat/completions", StringComparison.Ordinal) ? Chat
            : value.EndsWith("/completions", StringComparison.Ordinal) ? TextCompletion
            : value.EndsWith("/embeddings", StringComparison.Ordinal) ? Embeddings
            : null;
    }
}

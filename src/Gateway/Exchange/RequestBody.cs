using System.Buffers;
using System.Text.Json;

namespace Gateway.Exchange;

/// <summary>
/// Reads a request's JSON body before it is forwarded, for the steps that need it (a <c>json:</c> session source,
/// token-aware limits), without losing a byte of what is forwarded: the body is buffered
/// (<see cref="HttpRequestRewindExtensions.EnableBuffering(HttpRequest)"/>), read once, and rewound. Bodies that are not
/// JSON or larger than the limit are not read.
/// </summary>
internal static class RequestBody
{
    /// <summary>
    /// The buffered body of a JSON request (see <see cref="ReadAsync"/>); empty for other content types.
    /// </summary>
    /// <returns>The bytes, or empty when the request is not JSON, has no body, or is larger than <paramref name="maxBytes"/>.</returns>
    public static ValueTask<ReadOnlyMemory<byte>> ReadJsonAsync(HttpContext context, ExchangeContext exchange, int maxBytes, CancellationToken cancellationToken) =>
        IsJson(context.Request.ContentType)
            ? ReadAsync(context, exchange, maxBytes, cancellationToken)
            : ValueTask.FromResult(exchange.JsonBody ?? ReadOnlyMemory<byte>.Empty);

    /// <summary>
    /// The buffered body, whatever its type (a gRPC request's framed message, for example), read at most once per
    /// exchange and cached in <see cref="ExchangeContext.JsonBody"/>.
    /// </summary>
    /// <returns>The bytes, or empty when there is no body or it is larger than <paramref name="maxBytes"/>.</returns>
    public static async ValueTask<ReadOnlyMemory<byte>> ReadAsync(HttpContext context, ExchangeContext exchange, int maxBytes, CancellationToken cancellationToken)
    {
        if (exchange.JsonBody is { } cached)
        {
            return cached;
        }

        var request = context.Request;
        if (request.ContentLength is 0 || request.ContentLength > maxBytes || context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestBodyDetectionFeature>()?.CanHaveBody == false)
        {
            exchange.JsonBody = ReadOnlyMemory<byte>.Empty;
            return ReadOnlyMemory<byte>.Empty;
        }

        request.EnableBuffering(bufferThreshold: 64 * 1024, bufferLimit: maxBytes + 1);
        var buffer = new ArrayBufferWriter<byte>((int)(request.ContentLength ?? 4096));
        try
        {
            while (true)
            {
                var memory = buffer.GetMemory(4096);
                var read = await request.Body.ReadAsync(memory, cancellationToken);
                if (read == 0)
                {
                    break;
                }

                buffer.Advance(read);
                if (buffer.WrittenCount > maxBytes)
                {
                    exchange.JsonBody = ReadOnlyMemory<byte>.Empty;
                    request.Body.Position = 0;
                    return ReadOnlyMemory<byte>.Empty;
                }
            }
        }
        catch (IOException)
        {
            // Over the buffer limit or the client went away: the step that needed the body does without it.
            buffer.Clear();
        }

        request.Body.Position = 0;
        exchange.JsonBody = buffer.WrittenMemory;
        return exchange.JsonBody.Value;
    }

    /// <summary>Whether a content type is JSON (<c>application/json</c>, <c>application/*+json</c>).</summary>
    public static bool IsJson(string? contentType) =>
        contentType is not null
        && (contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase)
            || contentType.Contains("+json", StringComparison.OrdinalIgnoreCase));

    /// <summary>A top-level string (or number) field of a JSON object, without parsing the rest into objects.</summary>
    public static string? TopLevelField(ReadOnlySpan<byte> json, string field)
    {
        if (json.IsEmpty)
        {
            return null;
        }

        try
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return null;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var match = reader.ValueTextEquals(field);
                reader.Read();
                if (match)
                {
                    return reader.TokenType switch
                    {
                        JsonTokenType.String => reader.GetString(),
                        JsonTokenType.Number => System.Text.Encoding.UTF8.GetString(reader.ValueSpan),
                        _ => null,
                    };
                }

                reader.Skip();
            }
        }
        catch (JsonException)
        {
            // Malformed JSON has no fields; the backend will answer the client's mistake.
        }

        return null;
    }
}

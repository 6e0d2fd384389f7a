using System.Buffers;
using System.Runtime.ExceptionServices;
using System.Text.Json;

namespace Gateway.Exchange;

/// <summary>
/// Reads a request's JSON body before it is forwarded, for the steps that need it (a <c>json:</c> session source,
/// token-aware limits), without changing a byte of what is forwarded: the body is read once, up to a limit, and what
/// was read is replayed to the forwarder ahead of the rest. Bodies that are not JSON or declare a length over the limit
/// are not read.
/// </summary>
internal static class RequestBody
{
    /// <summary>
    /// The body, whatever its type (a gRPC request's framed message, for example), read once up to a limit. What was
    /// read is put back in front of the rest of the body (<see cref="ReplayStream"/>), so the forwarder sees exactly what
    /// it would have without the inspection: every byte of a body longer than <paramref name="maxBytes"/> (of unknown
    /// length, chunked), and the same failure when reading failed (a body over <c>Gateway:Limits:MaxRequestBodyBytes</c>
    /// still gets its 413, a client that went away its abort). Callers cache the result
    /// (<see cref="Classification.GetBodyAsync"/>): a second call would find the body already replaced.
    /// </summary>
    /// <returns>The bytes, or empty when there is no body, reading it failed, or it is larger than <paramref name="maxBytes"/>.</returns>
    public static async ValueTask<ReadOnlyMemory<byte>> ReadAsync(HttpContext context, int maxBytes, CancellationToken cancellationToken) =>
        (await ReadInspectedAsync(context, maxBytes, cancellationToken)).Body;

    /// <summary>
    /// As <see cref="ReadAsync"/>, and whether the body was inspected whole: false when there was a body that was not
    /// read (longer than <paramref name="maxBytes"/>, or reading it failed), so a step that must see a field of it (the
    /// tenant allow-list's model) knows it did not.
    /// </summary>
    public static async ValueTask<(ReadOnlyMemory<byte> Body, bool Whole)> ReadInspectedAsync(HttpContext context, int maxBytes, CancellationToken cancellationToken)
    {
        var request = context.Request;
        if (request.ContentLength is 0 || context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestBodyDetectionFeature>()?.CanHaveBody == false)
        {
            return (ReadOnlyMemory<byte>.Empty, true);
        }

        if (request.ContentLength > maxBytes)
        {
            return (ReadOnlyMemory<byte>.Empty, false);
        }

        var body = request.Body;
        var buffer = new ArrayBufferWriter<byte>((int)(request.ContentLength ?? 4096));
        var complete = false;
        ExceptionDispatchInfo? failure = null;
        try
        {
            // Up to one byte past the limit: a body that ends within it is whole, a longer one is not inspected.
            while (buffer.WrittenCount <= maxBytes)
            {
                var read = await body.ReadAsync(buffer.GetMemory(4096), cancellationToken);
                if (read == 0)
                {
                    complete = true;
                    break;
                }

                buffer.Advance(read);
            }
        }
        catch (IOException ex)
        {
            // Over Kestrel's body limit (BadHttpRequestException is an IOException) or the client went away: the step that
            // needed the body does without it, and the forwarder meets the same failure after the bytes read.
            failure = ExceptionDispatchInfo.Capture(ex);
        }

        request.Body = new ReplayStream(buffer.WrittenMemory, complete ? null : body, failure);
        return complete ? (buffer.WrittenMemory, true) : (ReadOnlyMemory<byte>.Empty, false);
    }

    /// <summary>Whether a content type is JSON (<c>application/json</c>, <c>application/*+json</c>).</summary>
    public static bool IsJson(string? contentType) =>
        contentType is not null
        && (contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase)
            || contentType.Contains("+json", StringComparison.OrdinalIgnoreCase));

    /// <summary>
    /// A top-level string (or number) field of a JSON object, without parsing the rest into objects; null when the body is
    /// not a JSON object, has no such field, or the field's string cannot be decoded.
    /// </summary>
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
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            // Malformed JSON has no fields, nor has a string that is not text (invalid UTF-8, a lone surrogate escape such as
            // \uD800: InvalidOperationException); the backend will answer the client's mistake.
        }

        return null;
    }

    /// <summary>
    /// The request body after an inspection: the bytes already read, then the rest of the original body (none when it
    /// was read to its end), then the failure met while reading, if any. Read-only and forward-only, as a request body is.
    /// </summary>
    private sealed class ReplayStream(ReadOnlyMemory<byte> prefix, Stream? rest, ExceptionDispatchInfo? failure) : Stream
    {
        private ReadOnlyMemory<byte> _prefix = prefix;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (!_prefix.IsEmpty)
            {
                return ValueTask.FromResult(FromPrefix(buffer.Span));
            }

            failure?.Throw();
            return rest is null || buffer.IsEmpty ? ValueTask.FromResult(0) : rest.ReadAsync(buffer, cancellationToken);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (!_prefix.IsEmpty)
            {
                return FromPrefix(buffer.AsSpan(offset, count));
            }

            failure?.Throw();
            return rest is null || count == 0 ? 0 : rest.Read(buffer, offset, count);
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        private int FromPrefix(Span<byte> destination)
        {
            var n = Math.Min(destination.Length, _prefix.Length);
            _prefix.Span[..n].CopyTo(destination);
            _prefix = _prefix[n..];
            return n;
        }
    }
}

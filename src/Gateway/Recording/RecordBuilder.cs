using System.Security.Cryptography;
using System.Text;
using Contracts.Recording;
using Gateway.Exchange;
using Gateway.Recording.Capture;

namespace Gateway.Recording;

/// <summary>
/// Turns a <see cref="CapturedExchange"/> into the shared schema's <see cref="ExchangeRecord"/>, off the request path:
/// redaction, text or base64 bodies, hashes, offsets in milliseconds.
/// </summary>
internal sealed class RecordBuilder
{
    private static readonly UTF8Encoding s_strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
    private readonly Redactor _redactor;
    private readonly TimeProvider _time;

    public RecordBuilder(Redactor redactor, TimeProvider time)
    {
        _redactor = redactor;
        _time = time;
    }

    /// <summary>Builds the records of one captured exchange, one per target recording (the same content, its own id and sequence).</summary>
    public List<ExchangeRecord> Build(CapturedExchange c)
    {
        var isGrpc = c.Protocol == Protocols.Grpc;
        var requestHeaders = _redactor.Headers(c.RequestHeaders, isGrpc);
        var responseHeaders = _redactor.Headers(c.ResponseHeaders, isGrpc);
        var trailers = c.Trailers is null ? null : _redactor.Headers(c.Trailers, isGrpc);
        var requestBody = Body(c.RequestBody, RequestBody.IsJson(c.RequestContentType), isGrpc);
        var units = Units(c);
        // A streamed response's bytes are in its units (each SSE event, each gRPC message): its body keeps only the
        // full length, the truncation flag and the hash, instead of the same bytes a second time.
        var responseBody = units is { Count: > 0 }
            ? BodySummary(c.ResponseBody)
            : Body(c.ResponseBody, RequestBody.IsJson(c.ResponseContentType), isGrpc);
        var (grpcStatus, grpcMessage) = isGrpc ? GrpcStatus(trailers, responseHeaders) : (null, null);
        var timing = new RecordedTiming
        {
            StartUnixMicros = (c.StartTime.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10,
            FirstByteMs = c.FirstByteTimestamp == 0 ? null : Ms(c.StartTimestamp, c.FirstByteTimestamp),
            DurationMs = Ms(c.StartTimestamp, c.EndTimestamp),
        };
        var request = new RecordedRequest
        {
            Method = c.Method,
            Scheme = c.Scheme,
            Path = c.Path,
            Query = Redactor.Query(c.Query),
            HttpVersion = c.HttpVersion,
            Headers = requestHeaders,
            Body = requestBody,
        };
        var response = new RecordedResponse
        {
            Status = c.Status,
            Headers = responseHeaders,
            Body = responseBody,
            GrpcStatus = grpcStatus,
            GrpcMessage = grpcMessage,
            Trailers = trailers,
        };

        var records = new List<ExchangeRecord>(c.Targets.Count);
        foreach (var (recording, sequence) in c.Targets)
        {
            records.Add(new ExchangeRecord
            {
                Recording = recording,
                Id = NewId(),
                SessionId = c.SessionId,
                Sequence = sequence,
                Protocol = c.Protocol,
                Streamed = units is not null,
                Listener = c.Listener,
                Route = c.Route,
                Cluster = c.Cluster,
                Destination = c.Destination,
                PrefixMatchChars = c.PrefixMatchChars,
                Tenant = c.Tenant,
                BackendHttpVersion = c.BackendHttpVersion,
                ClientKey = c.ClientKey,
                Request = request,
                Response = response,
                Timing = timing,
                Units = units,
                Outcome = c.Outcome,
                Tokens = c.Tokens,
            });
        }

        return records;
    }

    private RecordedBody? Body(CapturedBody body, bool json, bool binary)
    {
        if (body.Length == 0)
        {
            return null;
        }

        var bytes = body.Span;
        var truncated = body.Length > body.Count;
        var text = binary ? null : TryText(bytes, truncated);
        var redacted = false;
        if (text is not null && (json || text.Contains('"', StringComparison.Ordinal)))
        {
            var clean = _redactor.Json(text);
            redacted = !ReferenceEquals(clean, text) && clean != text;
            text = clean;
        }

        // The hash of a body whose secrets were replaced is taken over what is recorded, never over the secret-bearing
        // original: with the rest of the body known, a hash of the original would let a weak secret be guessed.
        var sha = redacted ? SHA256.HashData(Encoding.UTF8.GetBytes(text!)) : body.Sha256 ?? SHA256.HashData(bytes);
        return new RecordedBody
        {
            Length = body.Length,
            Truncated = truncated,
            Sha256 = Convert.ToHexStringLower(sha),
            Redacted = redacted,
            Text = text,
            Base64 = text is null ? Convert.ToBase64String(bytes) : null,
        };
    }

    private static RecordedBody? BodySummary(CapturedBody body) => body.Length == 0 ? null : new RecordedBody
    {
        Length = body.Length,
        Truncated = body.Length > body.Count,
        Sha256 = Convert.ToHexStringLower(body.Sha256 ?? SHA256.HashData(body.Span)),
    };

    private List<StreamUnit>? Units(CapturedExchange c)
    {
        if (c.Units.Count == 0)
        {
            return c.Protocol == Protocols.WebSocket || c.Protocol == Protocols.Grpc || IsSse(c) ? [] : null;
        }

        var list = new List<StreamUnit>(c.Units.Count);
        foreach (var u in c.Units)
        {
            var binary = u.Kind is UnitKinds.Grpc or UnitKinds.Binary;
            var truncated = u.Length > u.Payload.Length;
            var text = binary ? null : TryText(u.Payload, truncated);
            if (text is not null && u.Kind != UnitKinds.Close)
            {
                text = _redactor.Json(text);
            }

            list.Add(new StreamUnit
            {
                Dir = u.Dir,
                OffsetMs = Ms(c.StartTimestamp, u.Timestamp),
                Kind = u.Kind,
                Text = text,
                Base64 = text is null ? Convert.ToBase64String(u.Payload) : null,
                Length = u.Length,
                Truncated = truncated,
            });
        }

        return list;
    }

    private static bool IsSse(CapturedExchange c) =>
        c.ResponseContentType?.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase) == true;

    private static (int? Status, string? Message) GrpcStatus(RecordedHeader[]? trailers, RecordedHeader[] headers)
    {
        int? status = null;
        string? message = null;
        foreach (var h in (trailers ?? []).Concat(headers))
        {
            if (status is null && h.Name.Equals("grpc-status", StringComparison.OrdinalIgnoreCase) && int.TryParse(h.Value, out var s))
            {
                status = s;
            }
            else if (message is null && h.Name.Equals("grpc-message", StringComparison.OrdinalIgnoreCase))
            {
                message = Uri.UnescapeDataString(h.Value);
            }
        }

        return (status, message);
    }

    /// <summary>The bytes as UTF-8 text, or null when they are not valid UTF-8 (a cut body may end inside a character: that tail is dropped).</summary>
    private static string? TryText(ReadOnlySpan<byte> bytes, bool truncated)
    {
        if (truncated)
        {
            // Back off to a character boundary: at most 3 continuation bytes.
            var end = bytes.Length;
            for (var i = 0; i < 3 && end > 0 && (bytes[end - 1] & 0xC0) == 0x80; i++)
            {
                end--;
            }

            if (end > 0 && bytes[end - 1] >= 0xC0)
            {
                end--;
            }

            bytes = bytes[..end];
        }

        try
        {
            return s_strictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }

    private double Ms(long from, long to) => to <= from ? 0 : Math.Round(_time.GetElapsedTime(from, to).TotalMilliseconds, 3);

    private static string NewId()
    {
        Span<byte> bytes = stackalloc byte[16];
        RandomNumberGenerator.Fill(bytes);
        return Convert.ToHexStringLower(bytes);
    }
}

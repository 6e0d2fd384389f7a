using System.Text.Json.Serialization;

namespace Contracts.Recording;

/// <summary>
/// One recorded exchange (a request and its response, or a whole WebSocket connection), as the gateway writes it
/// and the replay tool reads it, in Redis and in the file store alike. Serialized by <see cref="RecordingSerializer"/>
/// as JSON with snake_case names; <see cref="SchemaVersion"/> lets a reader refuse what it does not understand.
/// </summary>
/// <remarks>
/// Times: <see cref="RecordedTiming.StartUnixMicros"/> is wall-clock time (microseconds since the Unix epoch); every
/// other time is a monotonic offset in milliseconds from the start of this exchange.
/// </remarks>
public sealed record ExchangeRecord
{
    /// <summary>The schema version this code writes.</summary>
    public const int CurrentSchemaVersion = 1;

    /// <summary>Schema version of the record (<see cref="CurrentSchemaVersion"/> when written by this code).</summary>
    [JsonPropertyName("v")]
    public int SchemaVersion { get; init; } = CurrentSchemaVersion;

    /// <summary>Name of the recording the exchange belongs to.</summary>
    public required string Recording { get; init; }

    /// <summary>Unique id of the exchange (assigned by the gateway, independent of the store's own ids).</summary>
    public required string Id { get; init; }

    /// <summary>The session the exchange belongs to (from a configured source, or generated).</summary>
    public required string SessionId { get; init; }

    /// <summary>Position of the exchange within its session, from 1, in order of arrival at the gateway.</summary>
    public long Sequence { get; init; }

    /// <summary>Protocol: <see cref="Protocols.Http"/>, <see cref="Protocols.Grpc"/> or <see cref="Protocols.WebSocket"/>.</summary>
    public required string Protocol { get; init; }

    /// <summary>True when the response was a stream (SSE, gRPC server streaming) or the exchange is a WebSocket connection.</summary>
    public bool Streamed { get; init; }

    /// <summary>Listener the request arrived on (<c>http</c>, <c>grpc</c>, <c>websocket</c>, <c>https</c>).</summary>
    public required string Listener { get; init; }

    /// <summary>YARP route id, if a route matched.</summary>
    public string? Route { get; init; }

    /// <summary>Cluster id, if a route matched.</summary>
    public string? Cluster { get; init; }

    /// <summary>
    /// The HTTP version the backend answered with, as ASP.NET Core names it (<c>HTTP/1.1</c>, <c>HTTP/2</c>); the
    /// client's is <see cref="RecordedRequest.HttpVersion"/>. A WebSocket may use HTTP/2 on one side and HTTP/1.1 on the
    /// other. Null when no answer came from a backend (the gateway answered itself, or the backend could not be
    /// reached), and in records written before the field existed.
    /// </summary>
    public string? BackendHttpVersion { get; init; }

    /// <summary>
    /// The authenticated tenant (its configured name, <c>Gateway:Tenants:{tenant}</c>); null when authentication is off or
    /// the route needed none, and in records written before the field existed. Never a credential.
    /// </summary>
    public string? Tenant { get; init; }

    /// <summary>The client key the gateway derived (an API key's hash, or the client address); never a secret.</summary>
    public string? ClientKey { get; init; }

    /// <summary>
    /// The id of the destination (replica) the request was forwarded to, as the cluster names it; null when it was not
    /// forwarded (the gateway answered itself), and in records written before the field existed.
    /// </summary>
    public string? Destination { get; init; }

    /// <summary>
    /// With the <c>InferenceAware</c> load-balancing policy: how many leading characters of the prompt's chat text the
    /// chosen destination had recently served (a multiple of 64; 0 for none). Null with any other policy.
    /// </summary>
    public int? PrefixMatchChars { get; init; }

    /// <summary>The request as the client sent it (after redaction).</summary>
    public required RecordedRequest Request { get; init; }

    /// <summary>The response as the client received it (after redaction). Status 0 when the client went away first.</summary>
    public required RecordedResponse Response { get; init; }

    /// <summary>When the exchange started and how long its parts took.</summary>
    public required RecordedTiming Timing { get; init; }

    /// <summary>
    /// Stream units in order of time: each SSE event, each gRPC message, each WebSocket frame, with direction and
    /// offset. Null for an exchange that was not streamed.
    /// </summary>
    public IReadOnlyList<StreamUnit>? Units { get; init; }

    /// <summary>How the exchange ended: <see cref="Outcomes"/>.</summary>
    public string Outcome { get; init; } = Outcomes.Completed;

    /// <summary>
    /// What the exchange cost in tokens, as the gateway's token accounting settled it; null when no token limit counted
    /// it (an optional field: records written before it existed, and readers that do not know it, are unaffected).
    /// </summary>
    public RecordedTokens? Tokens { get; init; }
}

/// <summary>
/// The tokens an exchange cost, as the gateway settled its token charge: the backend's reported <c>usage</c>, or, when
/// it reported none, the gateway's own estimate (then <see cref="Estimated"/> is true, and <see cref="Source"/> says
/// what it was estimated from).
/// </summary>
public sealed record RecordedTokens
{
    /// <summary>Prompt (input) tokens: the backend's <c>prompt_tokens</c>, or the gateway's count of the prompt.</summary>
    public long Prompt { get; init; }

    /// <summary>Completion (output) tokens: the backend's <c>completion_tokens</c>, or the gateway's estimate (see <see cref="Source"/>).</summary>
    public long Completion { get; init; }

    /// <summary>
    /// True when any of the counts is the gateway's estimate rather than what the backend reported (no usage at all, or
    /// usage without <c>prompt_tokens</c>).
    /// </summary>
    public bool Estimated { get; init; }

    /// <summary>Where the completion count came from: <see cref="TokenSources"/>.</summary>
    public required string Source { get; init; }

    /// <summary>What each token policy charged for the exchange, in the route's order; null in records written before it existed.</summary>
    public IReadOnlyList<RecordedTokenCharge>? Charges { get; init; }
}

/// <summary>One token policy's charge for one exchange: reserved up front, then reconciled when it ended.</summary>
public sealed record RecordedTokenCharge
{
    /// <summary>The policy's name.</summary>
    public required string Policy { get; init; }

    /// <summary>The request's estimate: prompt tokens plus <c>max_tokens</c>.</summary>
    public long Estimated { get; init; }

    /// <summary>Reserved before forwarding (the estimate).</summary>
    public long Reserved { get; init; }

    /// <summary>Finally charged: the tokens it cost (above <see cref="Reserved"/> when the usage exceeded it: the partition went into debt).</summary>
    public long Actual { get; init; }

    /// <summary>Given back: <see cref="Reserved"/> − <see cref="Actual"/> when positive, else 0.</summary>
    public long Refunded { get; init; }
}

/// <summary>Values of <see cref="RecordedTokens.Source"/>.</summary>
public static class TokenSources
{
    /// <summary>The backend's <c>usage</c> (a JSON answer's, a stream's usage chunk, or <c>GenerateReply.tokens</c>).</summary>
    public const string Usage = "usage";

    /// <summary>Estimated: the content chunks (SSE) or token messages (gRPC) delivered to the client, one token each, at most max_tokens (a stream cut short, or one without usage).</summary>
    public const string Delivered = "delivered";

    /// <summary>Estimated: the request's <c>max_tokens</c> (the up-front charge), when nothing better is known.</summary>
    public const string MaxTokens = "max_tokens";

    /// <summary>Nothing: the gateway answered it (refused by a limit, admission or the breaker) or the backend refused it before any byte; every reservation was refunded.</summary>
    public const string None = "none";
}

/// <summary>Values of <see cref="ExchangeRecord.Protocol"/>.</summary>
public static class Protocols
{
    /// <summary>HTTP/1.1 or HTTP/2 request/response, SSE included.</summary>
    public const string Http = "http";

    /// <summary>gRPC over HTTP/2.</summary>
    public const string Grpc = "grpc";

    /// <summary>A WebSocket connection: the upgrade request, then frames as <see cref="StreamUnit"/>s.</summary>
    public const string WebSocket = "websocket";
}

/// <summary>Values of <see cref="ExchangeRecord.Outcome"/>.</summary>
public static class Outcomes
{
    /// <summary>The response completed.</summary>
    public const string Completed = "completed";

    /// <summary>The client went away before the response completed.</summary>
    public const string ClientAbort = "client_abort";

    /// <summary>A gateway timeout ended the exchange.</summary>
    public const string Timeout = "timeout";

    /// <summary>The backend failed (connection error, broken stream).</summary>
    public const string Error = "error";

    /// <summary>
    /// A limit or admission control refused the exchange and nothing was forwarded: its status is the refusal's (429,
    /// 503; gRPC RESOURCE_EXHAUSTED or UNAVAILABLE in its grpc status); a bad request the gateway answered (400) is
    /// <see cref="Completed"/> with its status; a refused WebSocket session keeps its 101 and ends with the gateway's close
    /// unit (<c>1013</c> for an overload, <c>1008</c> for a rate limit, then the reason).
    /// </summary>
    public const string Refused = "refused";
}

/// <summary>A recorded request.</summary>
public sealed record RecordedRequest
{
    /// <summary>HTTP method (<c>POST</c>; <c>GET</c> for a WebSocket upgrade).</summary>
    public required string Method { get; init; }

    /// <summary><c>http</c> or <c>https</c>.</summary>
    public string Scheme { get; init; } = "http";

    /// <summary>Path, e.g. <c>/v1/chat/completions</c>.</summary>
    public required string Path { get; init; }

    /// <summary>Query string including the leading <c>?</c>, or null.</summary>
    public string? Query { get; init; }

    /// <summary>Protocol version as ASP.NET Core names it: <c>HTTP/1.1</c>, <c>HTTP/2</c>.</summary>
    public string HttpVersion { get; init; } = "HTTP/1.1";

    /// <summary>Headers in arrival order, redacted values replaced by <see cref="Redaction.Marker"/>.</summary>
    public IReadOnlyList<RecordedHeader> Headers { get; init; } = [];

    /// <summary>The body, or null when there was none.</summary>
    public RecordedBody? Body { get; init; }
}

/// <summary>A recorded response.</summary>
public sealed record RecordedResponse
{
    /// <summary>HTTP status the client received; 0 when none was sent.</summary>
    public int Status { get; init; }

    /// <summary>Response headers, redacted.</summary>
    public IReadOnlyList<RecordedHeader> Headers { get; init; } = [];

    /// <summary>The body, or null when there was none.</summary>
    public RecordedBody? Body { get; init; }

    /// <summary>gRPC status code (from trailers, or headers for a trailers-only response), for gRPC exchanges.</summary>
    public int? GrpcStatus { get; init; }

    /// <summary>gRPC status message, percent-decoded.</summary>
    public string? GrpcMessage { get; init; }

    /// <summary>Response trailers (gRPC), redacted; null when there were none.</summary>
    public IReadOnlyList<RecordedHeader>? Trailers { get; init; }
}

/// <summary>A header or trailer: name and value. Serialized as a two-element JSON array <c>["name","value"]</c>.</summary>
/// <param name="Name">Header name as received (case preserved).</param>
/// <param name="Value">Value, or <see cref="Redaction.Marker"/>.</param>
[JsonConverter(typeof(RecordedHeaderConverter))]
public readonly record struct RecordedHeader(string Name, string Value);

/// <summary>
/// A body as captured: at most the configured cap (default 64 KiB) is kept, with the full length and a SHA-256 of
/// the full body so a replay can tell a truncated body and compare bodies.
/// </summary>
public sealed record RecordedBody
{
    /// <summary>Full length of the body in bytes (not only the captured part).</summary>
    public long Length { get; init; }

    /// <summary>True when only the first bytes were kept.</summary>
    public bool Truncated { get; init; }

    /// <summary>
    /// Lower-case hex SHA-256 of the full body as received; when <see cref="Redacted"/> is true, of the recorded bytes
    /// (after redaction) instead, so that the hash cannot be used to guess a redacted secret.
    /// </summary>
    public required string Sha256 { get; init; }

    /// <summary>True when redaction changed the recorded bytes (then <see cref="Sha256"/> is of the redacted bytes).</summary>
    public bool Redacted { get; init; }

    /// <summary>The captured bytes as text, when they are valid UTF-8; otherwise null and <see cref="Base64"/> is set.</summary>
    public string? Text { get; init; }

    /// <summary>The captured bytes in base64, when they are not valid UTF-8.</summary>
    public string? Base64 { get; init; }

    /// <summary>The captured bytes.</summary>
    public byte[] GetBytes() => Text is not null ? System.Text.Encoding.UTF8.GetBytes(Text) : Base64 is not null ? Convert.FromBase64String(Base64) : [];
}

/// <summary>Timings of an exchange.</summary>
public sealed record RecordedTiming
{
    /// <summary>Wall-clock start, microseconds since the Unix epoch (UTC).</summary>
    public long StartUnixMicros { get; init; }

    /// <summary>Milliseconds from start to the first response byte sent to the client; null when none was sent.</summary>
    public double? FirstByteMs { get; init; }

    /// <summary>Milliseconds from start to the end of the exchange.</summary>
    public double DurationMs { get; init; }
}

/// <summary>
/// One unit of a stream: an SSE event, a gRPC message or a WebSocket frame.
/// </summary>
public sealed record StreamUnit
{
    /// <summary><see cref="Directions.ToServer"/> (client to server) or <see cref="Directions.ToClient"/>.</summary>
    public required string Dir { get; init; }

    /// <summary>Milliseconds from the start of the exchange.</summary>
    public double OffsetMs { get; init; }

    /// <summary><see cref="UnitKinds"/>: <c>sse</c>, <c>grpc</c>, <c>text</c>, <c>binary</c>, <c>close</c>.</summary>
    public required string Kind { get; init; }

    /// <summary>Payload when it is text (an SSE event block, a WebSocket text frame).</summary>
    public string? Text { get; init; }

    /// <summary>Payload in base64 when binary (a gRPC message, a WebSocket binary frame).</summary>
    public string? Base64 { get; init; }

    /// <summary>Full payload length in bytes (the payload itself may be truncated by the body cap).</summary>
    public int Length { get; init; }

    /// <summary>True when the payload was cut at the capture cap.</summary>
    public bool Truncated { get; init; }
}

/// <summary>Values of <see cref="StreamUnit.Dir"/>.</summary>
public static class Directions
{
    /// <summary>Client to server.</summary>
    public const string ToServer = "in";

    /// <summary>Server to client.</summary>
    public const string ToClient = "out";
}

/// <summary>Values of <see cref="StreamUnit.Kind"/>.</summary>
public static class UnitKinds
{
    /// <summary>A server-sent event (its lines, without the blank line that ends it).</summary>
    public const string Sse = "sse";

    /// <summary>A gRPC message payload (without the 5-byte length prefix).</summary>
    public const string Grpc = "grpc";

    /// <summary>A WebSocket text message.</summary>
    public const string Text = "text";

    /// <summary>A WebSocket binary message.</summary>
    public const string Binary = "binary";

    /// <summary>A WebSocket close frame (status code and reason in <see cref="StreamUnit.Text"/>).</summary>
    public const string Close = "close";
}

/// <summary>What redaction writes in place of a secret.</summary>
public static class Redaction
{
    /// <summary>The marker that replaces a redacted header value, JSON field or gRPC metadata value.</summary>
    public const string Marker = "[REDACTED]";
}

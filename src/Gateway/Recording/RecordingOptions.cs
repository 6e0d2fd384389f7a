using System.ComponentModel.DataAnnotations;
using Gateway.Configuration;

namespace Gateway.Recording;

/// <summary>
/// Recording of real traffic, bound from <c>Gateway:Recording</c>. See docs/recording.md for the key layout and
/// schema.
/// </summary>
internal sealed record RecordingOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Gateway:Recording";

    /// <summary>
    /// StackExchange.Redis connection string (or <c>redis://host:port</c>) of the Redis that stores recordings.
    /// Default: none, and recordings go to the file store in <see cref="Directory"/>.
    /// </summary>
    public string? Redis { get; set; }

    /// <summary>Directory of the file store (used when <see cref="Redis"/> is not set). Default <c>data/recordings</c>.</summary>
    public string Directory { get; set; } = "data/recordings";

    /// <summary>A recording to start when the gateway starts (its name). Default: none.</summary>
    public string? StartAtBoot { get; set; }

    /// <summary>Most bytes of a body (and of each stream unit) kept; the rest is cut, with the full length and SHA-256 kept. Default 65536 (64 KiB).</summary>
    [Range(0, 64 * 1024 * 1024)]
    public int MaxBodyBytes { get; set; } = 64 * 1024;

    /// <summary>Most stream units (SSE events, gRPC messages, WebSocket frames) kept per exchange. Default 10000.</summary>
    [Range(0, int.MaxValue)]
    public int MaxUnits { get; set; } = 10_000;

    /// <summary>Capacity of the in-memory queue between the proxy and the store writer, in exchanges. Default 10000.</summary>
    [Range(1, int.MaxValue)]
    public int QueueCapacity { get; set; } = 10_000;

    /// <summary>Most exchanges written to the store in one batch. Default 256.</summary>
    [Range(1, 10_000)]
    public int BatchSize { get; set; } = 256;

    /// <summary>How long a batch is retried while the store is unavailable before it is dropped (and counted). Default 00:00:30.</summary>
    [Range(typeof(TimeSpan), "00:00:00", ConfigRanges.MaxDuration)]
    public TimeSpan RetryFor { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Session id sources, tried in order.</summary>
    public SessionOptions Sessions { get; set; } = new();

    /// <summary>What is replaced by a marker before anything leaves the process.</summary>
    public RedactionOptions Redaction { get; set; } = new();

    /// <summary>Which sessions are recorded.</summary>
    public SamplingOptions Sampling { get; set; } = new();

    /// <summary>How long recordings are kept in Redis.</summary>
    public RetentionOptions Retention { get; set; } = new();
}

/// <summary>
/// Where a request's session id comes from, bound from <c>Gateway:Recording:Sessions</c>.
/// </summary>
internal sealed record SessionOptions
{
    /// <summary>
    /// Sources tried in order, the first that yields a value wins: <c>header:NAME</c>, <c>cookie:NAME</c>,
    /// <c>json:FIELD</c> (a top-level field of a JSON request body), <c>grpc:KEY</c> (gRPC metadata),
    /// <c>websocket</c> (each WebSocket connection is a session). When none yields a value, a new id is generated
    /// for the exchange. Default: <c>header:x-session-id</c>, <c>cookie:session_id</c>, <c>json:session_id</c>,
    /// <c>grpc:x-session-id</c>, <c>websocket</c>.
    /// </summary>
    public ConfigList<string> Sources { get; set; } = [];

    /// <summary>The default list, used when <see cref="Sources"/> is empty.</summary>
    public static readonly string[] DefaultSources = ["header:x-session-id", "cookie:session_id", "json:session_id", "grpc:x-session-id", "websocket"];

    /// <summary>Largest request body read to find a <c>json:</c> session id, in bytes; larger bodies are not inspected. Default 1 MiB.</summary>
    [Range(0, int.MaxValue)]
    public int MaxInspectBytes { get; set; } = 1024 * 1024;

    /// <summary>A session unseen for this long is forgotten (its next exchange starts a new sequence). Default 00:30:00.</summary>
    [Range(typeof(TimeSpan), ConfigRanges.MinDuration, ConfigRanges.MaxDuration)]
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromMinutes(30);
}

/// <summary>Redaction, bound from <c>Gateway:Recording:Redaction</c>.</summary>
internal sealed record RedactionOptions
{
    /// <summary>Headers always redacted (case-insensitive): credentials and cookies.</summary>
    public static readonly string[] BuiltInHeaders = ["Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key", "Api-Key", "X-Auth-Token", "X-Goog-Api-Key", "X_Api_Key", "Api_Key"];

    /// <summary>Query-string parameters whose values are always redacted (case-insensitive): credentials some clients send in the URL (stranger review R8).</summary>
    public static readonly string[] BuiltInQueryParameters = ["api_key", "api-key", "apikey", "key", "access_token", "token"];

    /// <summary>More header names to redact (case-insensitive), on top of <see cref="BuiltInHeaders"/>.</summary>
    public ConfigList<string> Headers { get; set; } = [];

    /// <summary>JSON field names whose values are redacted wherever they appear in a JSON body, SSE event or WebSocket message. Default: <c>api_key</c>, <c>password</c>.</summary>
    public ConfigList<string> JsonFields { get; set; } = [];

    /// <summary>The default JSON fields, used when <see cref="JsonFields"/> is empty.</summary>
    public static readonly string[] DefaultJsonFields = ["api_key", "password"];

    /// <summary>gRPC metadata keys redacted in gRPC headers and trailers (case-insensitive).</summary>
    public ConfigList<string> GrpcMetadata { get; set; } = [];
}

/// <summary>Sampling by whole sessions, bound from <c>Gateway:Recording:Sampling</c>.</summary>
internal sealed record SamplingOptions
{
    /// <summary>Fraction of sessions recorded, 0 to 1, on routes without their own rate. Default 1 (every session).</summary>
    [Range(0.0, 1.0)]
    public double Rate { get; set; } = 1.0;

    /// <summary>Per-route fraction of sessions recorded (route id → 0 to 1).</summary>
    public ConfigMap<double> Routes { get; set; } = new(StringComparer.Ordinal);
}

/// <summary>Retention in Redis, bound from <c>Gateway:Recording:Retention</c> (the file store keeps everything).</summary>
internal sealed record RetentionOptions
{
    /// <summary>Approximate most exchanges kept per recording (XADD MAXLEN ~). Default: no limit.</summary>
    [Range(typeof(long), "1", "9223372036854775807")]
    public long? MaxLength { get; set; }

    /// <summary>Oldest exchange kept (XADD MINID ~), e.g. <c>7.00:00:00</c>. Default: no limit.</summary>
    [Range(typeof(TimeSpan), ConfigRanges.MinDuration, ConfigRanges.MaxRetention)]
    public TimeSpan? MaxAge { get; set; }

    /// <summary>Time to live of a recording's keys, refreshed on each write. Default: none.</summary>
    [Range(typeof(TimeSpan), "00:00:01", ConfigRanges.MaxRetention)]
    public TimeSpan? Ttl { get; set; }
}

using System.ComponentModel.DataAnnotations;
namespace Gateway.Configuration;

/// <summary>Limits on what a client may send, bound from <c>Gateway:Limits</c>.</summary>
internal sealed record GatewayLimitsOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Gateway:Limits";

    /// <summary>Largest request body in bytes; a larger one is refused with 413. Default 10 MiB; must be &gt; 0.</summary>
    [Range(typeof(long), "1", "9223372036854775807")]
    public long MaxRequestBodyBytes { get; set; } = 10 * 1024 * 1024;

    /// <summary>
    /// Largest request header section in bytes, counted as the sum of every header's name and value lengths (HTTP/2
    /// pseudo-headers and the request line excluded); a larger one is answered 431 <c>request_headers_too_large</c>
    /// (on HTTP/2 on that stream only). Kestrel's own limits are set to twice this value, so that Kestrel reads such
    /// headers instead of failing the connection. Default 32768 (Kestrel's default); from 1 KiB to 16 MiB.
    /// </summary>
    [Range(1024, 16 * 1024 * 1024)]
    public int MaxRequestHeadersTotalBytes { get; set; } = 32 * 1024;

    /// <summary>
    /// Most request headers (HTTP/2 pseudo-headers excluded); more are answered 431 <c>request_headers_too_large</c>.
    /// Kestrel's own limit is set to twice this value. Default 100 (Kestrel's default); from 1 to 10000.
    /// </summary>
    [Range(1, 10_000)]
    public int MaxRequestHeaderCount { get; set; } = 100;

    /// <summary>
    /// Most bytes of an error body (status 400 or above) relayed from a backend; the rest is read and discarded, and the
    /// client gets a complete response with the first bytes (a declared <c>Content-Length</c> is lowered to this).
    /// Successful responses are never limited. Default 1 MiB; must be &gt;= 0 (0: error statuses are relayed without a body).
    /// </summary>
    [Range(typeof(long), "0", "9223372036854775807")]
    public long MaxErrorBodyBytes { get; set; } = 1024 * 1024;

    /// <summary>
    /// How long a WebSocket connection may stay silent in both directions (a chat session between turns) before the
    /// gateway closes it; it replaces the cluster's short-call idle timeout for WebSockets. Default 01:00:00.
    /// </summary>
    [Range(typeof(TimeSpan), ConfigRanges.MinDuration, ConfigRanges.MaxDuration)]
    public TimeSpan WebSocketIdleTimeout { get; set; } = TimeSpan.FromHours(1);
}

/// <summary>Telemetry export, bound from <c>Gateway:Telemetry</c>.</summary>
internal sealed record GatewayTelemetryOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Gateway:Telemetry";

    /// <summary>
    /// OTLP endpoint (for example <c>http://127.0.0.1:4317</c>) for traces and metrics. Default: none, or the
    /// standard <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> environment variable. Prometheus metrics on the admin listener are
    /// always on.
    /// </summary>
    public string? OtlpEndpoint { get; set; }

    /// <summary>
    /// The <c>gen_ai.provider.name</c> attribute of the GenAI metrics and spans (OpenTelemetry GenAI semantic
    /// conventions): the API flavour the gateway serves. Default <c>openai</c> (the OpenAI REST API that vLLM and ModelSim
    /// speak); a well-known value such as <c>azure.ai.openai</c> or a custom one. 1 to 64 characters: lower-case letters,
    /// digits, <c>.</c>, <c>_</c> and <c>-</c>.
    /// </summary>
    public string GenAiProviderName { get; set; } = "openai";

    /// <summary>
    /// Whether LLM exchanges record the OpenTelemetry GenAI metrics and span attributes (which costs each one a usage
    /// meter on its response: its JSON answer copied up to 256 KiB and read once, its SSE events or gRPC messages read
    /// as they pass). Default true; false leaves only the <c>gateway.*</c> instruments.
    /// </summary>
    public bool GenAiMetrics { get; set; } = true;

    /// <summary>
    /// When true, an OpenAI streamed request (<c>"stream": true</c>) whose client did not ask for usage is sent with
    /// <c>stream_options.include_usage</c>, and the usage chunk is removed from what the client sees (as a token policy
    /// does), so that <c>gen_ai.client.token.usage</c> counts its tokens. Applies only where the gateway reads the body
    /// anyway (<c>Gateway:Models</c> configured, a token policy, an <c>InferenceAware</c> cluster). Default false: a
    /// stream is forwarded as sent, and records no token usage unless its client asked for it.
    /// </summary>
    public bool GenAiStreamUsage { get; set; }

    /// <summary>Whether <paramref name="value"/> is a valid <see cref="GenAiProviderName"/>.</summary>
    internal static bool IsValidProviderName(string? value)
    {
        if (string.IsNullOrEmpty(value) || value.Length > 64)
        {
            return false;
        }

        foreach (var c in value)
        {
            if (c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '_' or '-'))
            {
                return false;
            }
        }

        return true;
    }
}

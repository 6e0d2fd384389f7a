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
}

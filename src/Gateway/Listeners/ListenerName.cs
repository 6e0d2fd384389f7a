namespace Gateway.Listeners;

/// <summary>
/// The gateway's listeners. Each protocol has its own Kestrel endpoint so that a platform team can firewall,
/// scale and observe them apart; a route names the listeners it answers on.
/// </summary>
internal enum ListenerName
{
    /// <summary>HTTP/1.1 REST and server-sent events (default 127.0.0.1:8080).</summary>
    Http,

    /// <summary>gRPC over HTTP/2, cleartext unless a certificate is configured (default 127.0.0.1:8081).</summary>
    Grpc,

    /// <summary>WebSocket upgrades over HTTP/1.1 (default 127.0.0.1:8082).</summary>
    WebSocket,

    /// <summary>TLS with HTTP/1.1 and HTTP/2 by ALPN; only opened when a certificate is configured (default 127.0.0.1:8443).</summary>
    Https,

    /// <summary>Health, readiness, Prometheus metrics and the admin API (default 127.0.0.1:8090).</summary>
    Admin,
}

/// <summary>Names of listeners as they appear in configuration keys and metric tags.</summary>
internal static class ListenerNames
{
    /// <summary>The listeners that carry proxied traffic (every listener but <see cref="ListenerName.Admin"/>).</summary>
    public static readonly ListenerName[] Proxy = [ListenerName.Http, ListenerName.Grpc, ListenerName.WebSocket, ListenerName.Https];

    /// <summary>All listeners in configuration order.</summary>
    public static readonly ListenerName[] All = [ListenerName.Http, ListenerName.Grpc, ListenerName.WebSocket, ListenerName.Https, ListenerName.Admin];

    // Cached strings so that tagging a request never formats an enum.
    private static readonly string[] s_tags = ["http", "grpc", "websocket", "https", "admin"];

    /// <summary>The lower-case tag value used in metrics and logs (<c>http</c>, <c>grpc</c>, ...).</summary>
    public static string Tag(this ListenerName name) => s_tags[(int)name];

    /// <summary>Parses a listener name as configuration spells it (case-insensitive).</summary>
    public static bool TryParse(string? text, out ListenerName name) =>
        Enum.TryParse(text?.Trim(), ignoreCase: true, out name) && Enum.IsDefined(name);
}

namespace Replay.Clients;

/// <summary>Where and how requests are sent.</summary>
internal sealed record ClientSettings
{
    /// <summary>Base URI of HTTP requests (<c>--http-target</c>, else <c>--target</c>).</summary>
    public Uri? HttpTarget { get; init; }

    /// <summary>Base URI of gRPC requests (<c>--grpc-target</c>, else <c>--target</c>).</summary>
    public Uri? GrpcTarget { get; init; }

    /// <summary>Base URI of WebSocket connections (<c>--ws-target</c>, else <c>--target</c> with ws/wss).</summary>
    public Uri? WebSocketTarget { get; init; }

    /// <summary><c>--http2</c>: HTTP requests use HTTP/2 (prior knowledge on http://, ALPN on https://).</summary>
    public bool Http2 { get; init; }

    /// <summary><c>--insecure</c>: accept any TLS certificate (self-signed staging targets).</summary>
    public bool Insecure { get; init; }

    /// <summary><c>--timeout</c>: a request with no complete response by then fails as a timeout.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>The default of <c>--connections</c>.</summary>
    public const int DefaultMaxConnections = 20_000;

    /// <summary>
    /// <c>--connections</c>, fitted to the open-file limit (<see cref="ConnectionBudget"/>): most sockets held at once,
    /// one per HTTP/1.1 request in flight and per WebSocket connection; also each target's HTTP/2 connection cap.
    /// </summary>
    public int MaxConnections { get; init; } = DefaultMaxConnections;

    /// <summary><c>--header</c>: headers to add or replace on every request.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> HeaderOverrides { get; init; } = [];

    /// <summary><c>--drop-header</c>: headers never sent.</summary>
    public IReadOnlyList<string> DropHeaders { get; init; } = [];

    /// <summary><c>--compare</c>: compare each response with the recorded one.</summary>
    public bool Compare { get; init; }
}

using System.Security.Cryptography;
using Gateway.Exchange;
using Microsoft.Extensions.Options;

namespace Gateway.Recording;

/// <summary>One configured session id source (<c>header:NAME</c>, <c>cookie:NAME</c>, <c>json:FIELD</c>, <c>grpc:KEY</c>, <c>websocket</c>).</summary>
internal readonly record struct SessionSource(SessionSourceKind Kind, string Name)
{
    public static bool TryParse(string? text, out SessionSource source, out string? error)
    {
        source = default;
        error = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            error = "empty";
            return false;
        }

        var colon = text.IndexOf(':', StringComparison.Ordinal);
        var kind = (colon < 0 ? text : text[..colon]).Trim().ToLowerInvariant();
        var name = colon < 0 ? string.Empty : text[(colon + 1)..].Trim();
        switch (kind)
        {
            case "websocket" when name.Length == 0:
                source = new SessionSource(SessionSourceKind.WebSocket, string.Empty);
                return true;
            case "header" or "cookie" or "json" or "grpc" when name.Length > 0:
                source = new SessionSource(kind switch
                {
                    "header" => SessionSourceKind.Header,
                    "cookie" => SessionSourceKind.Cookie,
                    "json" => SessionSourceKind.Json,
                    _ => SessionSourceKind.Grpc,
                }, name);
                return true;
            case "header" or "cookie" or "json" or "grpc":
                error = $"'{kind}:' needs a name, e.g. {kind}:session_id";
                return false;
            default:
                error = "expected header:NAME, cookie:NAME, json:FIELD, grpc:KEY or websocket";
                return false;
        }
    }
}

/// <summary>Kinds of <see cref="SessionSource"/>.</summary>
internal enum SessionSourceKind
{
    Header,
    Cookie,
    Json,
    Grpc,
    WebSocket,
}

/// <summary>
/// Finds a request's session id from the configured sources, in order, and generates one when none has it. For a
/// <c>json:</c> source the JSON body is read (buffered, then rewound for forwarding) only if no earlier source
/// matched. A WebSocket connection is its own session when the <c>websocket</c> source is reached.
/// </summary>
internal sealed class SessionResolver
{
    private readonly SessionSource[] _sources;
    private readonly int _maxInspectBytes;

    public SessionResolver(IOptions<RecordingOptions> options)
    {
        var o = options.Value.Sessions;
        var list = o.Sources.Count > 0 ? o.Sources : [.. SessionOptions.DefaultSources];
        _sources = [.. list.Select(static s => SessionSource.TryParse(s, out var src, out _) ? src : throw new InvalidOperationException($"invalid session source '{s}'"))];
        _maxInspectBytes = o.MaxInspectBytes;
    }

    /// <summary>
    /// The session id of a request: the first configured source that has one, else a generated id. Called once per
    /// exchange, by <see cref="Classification.GetSessionIdAsync"/>, which keeps the answer.
    /// </summary>
    public async ValueTask<string> ResolveAsync(HttpContext context, Classification classification, CancellationToken cancellationToken)
    {
        var request = context.Request;
        foreach (var source in _sources)
        {
            string? id = source.Kind switch
            {
                SessionSourceKind.Header when !classification.IsGrpc => First(request.Headers[source.Name]),
                SessionSourceKind.Cookie => request.Cookies[source.Name],
                SessionSourceKind.Grpc when classification.IsGrpc => First(request.Headers[source.Name]),
                SessionSourceKind.WebSocket when classification.IsWebSocket => NewId("ws-"),
                SessionSourceKind.Json => RequestBody.TopLevelField((await classification.GetBodyAsync(_maxInspectBytes, jsonOnly: true, cancellationToken)).Span, source.Name),
                _ => null,
            };

            if (!string.IsNullOrWhiteSpace(id) && id.Length <= 256)
            {
                return id;
            }
        }

        return NewId("gen-");
    }

    /// <summary>
    /// Whether <paramref name="id"/> was made by the gateway (<c>gen-</c>: no source had one; <c>ws-</c>: one per
    /// WebSocket connection) rather than sent by the client: such an id never names a later request's session.
    /// </summary>
    public static bool IsGenerated(string id) => id.StartsWith("gen-", StringComparison.Ordinal) || id.StartsWith("ws-", StringComparison.Ordinal);

    private static string? First(Microsoft.Extensions.Primitives.StringValues values) => values.Count > 0 ? values[0] : null;

    private static string NewId(string prefix)
    {
        Span<byte> bytes = stackalloc byte[12];
        RandomNumberGenerator.Fill(bytes);
        return prefix + Convert.ToHexStringLower(bytes);
    }
}

using Contracts.Recording;

namespace Replay.Sources;

/// <summary>
/// Decides which recorded headers are sent again: hop-by-hop headers, those the client stack sets itself (host,
/// content-length, WebSocket handshake) and redacted values are dropped; <c>--drop-header</c> names are dropped;
/// <c>--header</c> values replace or add.
/// </summary>
internal static class HeaderFilter
{
    private static readonly HashSet<string> s_alwaysDropped = new(StringComparer.OrdinalIgnoreCase)
    {
        "host", "content-length", "connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection",
        "proxy-authorization", "te", "trailer", "expect", "sec-websocket-key", "sec-websocket-version",
        "sec-websocket-extensions", "sec-websocket-accept", "accept-encoding", "traceparent", "tracestate",
    };

    /// <summary>The recorded headers that may be replayed (pseudo-headers, hop-by-hop and redacted ones removed).</summary>
    public static List<KeyValuePair<string, string>> FromRecorded(IReadOnlyList<RecordedHeader> headers)
    {
        var list = new List<KeyValuePair<string, string>>(headers.Count);
        foreach (var h in headers)
        {
            if (h.Name.Length == 0 || h.Name[0] == ':' || s_alwaysDropped.Contains(h.Name) || h.Value == Redaction.Marker)
            {
                continue;
            }

            list.Add(new(h.Name, h.Value));
        }

        return list;
    }

    /// <summary>Applies <c>--drop-header</c> and then <c>--header</c> overrides (an override replaces every header of that name).</summary>
    public static IReadOnlyList<KeyValuePair<string, string>> Apply(
        IReadOnlyList<KeyValuePair<string, string>> headers,
        IReadOnlyCollection<string> drop,
        IReadOnlyList<KeyValuePair<string, string>> overrides)
    {
        if (drop.Count == 0 && overrides.Count == 0)
        {
            return headers;
        }

        var list = new List<KeyValuePair<string, string>>(headers.Count + overrides.Count);
        foreach (var h in headers)
        {
            if (Contains(drop, h.Key) || ContainsKey(overrides, h.Key))
            {
                continue;
            }

            list.Add(h);
        }

        list.AddRange(overrides);
        return list;
    }

    /// <summary>Whether a recorded header of this name is dropped (<c>--drop-header</c>) or replaced (<c>--header</c>).</summary>
    public static bool IsReplacedOrDropped(string name, IReadOnlyCollection<string> drop, IReadOnlyList<KeyValuePair<string, string>> overrides) =>
        Contains(drop, name) || ContainsKey(overrides, name);

    private static bool Contains(IReadOnlyCollection<string> names, string name)
    {
        foreach (var n in names)
        {
            if (string.Equals(n, name, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }

    private static bool ContainsKey(IReadOnlyList<KeyValuePair<string, string>> headers, string name)
    {
        foreach (var h in headers)
        {
            if (string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }
}

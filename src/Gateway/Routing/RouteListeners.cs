using Gateway.Listeners;

namespace Gateway.Routing;

/// <summary>
/// Which listeners a YARP route answers on: its <c>Metadata:Listeners</c> entry, a comma-separated list of
/// listener names (<c>Http</c>, <c>Grpc</c>, <c>WebSocket</c>, <c>Https</c>), case-insensitive. A route without
/// the entry answers on <c>Http</c> and <c>Https</c>. <c>Admin</c> is not allowed: the admin listener serves only
/// the gateway's own endpoints.
/// </summary>
internal static class RouteListeners
{
    /// <summary>The metadata key.</summary>
    public const string MetadataKey = "Listeners";

    /// <summary>Listeners of a route without <see cref="MetadataKey"/>.</summary>
    public static readonly IReadOnlyList<ListenerName> Default = [ListenerName.Http, ListenerName.Https];

    /// <summary>Parses the entry; on failure <paramref name="error"/> says what is wrong (without the key).</summary>
    public static bool TryParse(string? value, out IReadOnlyList<ListenerName> listeners, out string? error)
    {
        error = null;
        if (string.IsNullOrWhiteSpace(value))
        {
            listeners = Default;
            return true;
        }

        var list = new List<ListenerName>();
        foreach (var part in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!ListenerNames.TryParse(part, out var name))
            {
                error = $"'{part}' is not a listener (expected Http, Grpc, WebSocket or Https)";
                listeners = Default;
                return false;
            }

            if (name == ListenerName.Admin)
            {
                error = "the Admin listener serves only the gateway's own endpoints and cannot carry a route";
                listeners = Default;
                return false;
            }

            if (!list.Contains(name))
            {
                list.Add(name);
            }
        }

        if (list.Count == 0)
        {
            error = "the list is empty";
            listeners = Default;
            return false;
        }

        listeners = list;
        return true;
    }

    /// <summary>Listeners of a route given its metadata (the default when the entry is absent or invalid; validation reports the latter).</summary>
    public static IReadOnlyList<ListenerName> Of(IReadOnlyDictionary<string, string>? metadata) =>
        metadata is not null && metadata.TryGetValue(MetadataKey, out var v) && TryParse(v, out var l, out _) ? l : Default;
}

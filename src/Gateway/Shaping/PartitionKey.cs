using Gateway.Exchange;

namespace Gateway.Shaping;

/// <summary>One part of a partition key.</summary>
internal enum PartitionPart
{
    ApiKey,
    ClientAddress,
    Session,
    Route,
    Header,
    Global,

    /// <summary>The authenticated tenant's name (<see cref="Classification.Tenant"/>); <c>(none)</c> without one.</summary>
    Tenant,
}

/// <summary>
/// What a policy counts per (<see cref="PolicyOptions.Partition"/>): parts joined by <c>+</c>, each <c>ApiKey</c>
/// (the hashed API key, or the client address without one), <c>ClientAddress</c>, <c>Session</c>, <c>Route</c>,
/// <c>Header:NAME</c>, <c>Global</c> or <c>Tenant</c> (the authenticated tenant's name; the partition of the tenants'
/// own limits).
/// </summary>
internal sealed class PartitionKey
{
    private readonly (PartitionPart Part, string? Header)[] _parts;

    private PartitionKey((PartitionPart, string?)[] parts) => _parts = parts;

    /// <summary>Whether the key needs the session id (resolved before the policy runs).</summary>
    public bool NeedsSession => _parts.Any(static p => p.Part == PartitionPart.Session);

    public static bool TryParse(string? text, out PartitionKey key, out string? error)
    {
        key = null!;
        error = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            error = "empty";
            return false;
        }

        var parts = new List<(PartitionPart, string?)>();
        foreach (var raw in text.Split('+', StringSplitOptions.TrimEntries))
        {
            if (raw.StartsWith("Header:", StringComparison.OrdinalIgnoreCase) && raw.Length > 7)
            {
                parts.Add((PartitionPart.Header, raw[7..]));
            }
            else if (Enum.TryParse<PartitionPart>(raw, ignoreCase: true, out var part) && part != PartitionPart.Header && Enum.IsDefined(part))
            {
                parts.Add((part, null));
            }
            else
            {
                error = $"'{raw}' is not a partition key source (ApiKey, ClientAddress, Session, Route, Header:NAME, Global, Tenant, or several joined by '+')";
                return false;
            }
        }

        key = new PartitionKey([.. parts]);
        return true;
    }

    /// <summary>The partition of a request (a short string; never a secret: API keys are hashed).</summary>
    public string Of(HttpContext context, Classification classification)
    {
        if (_parts.Length == 1)
        {
            return One(_parts[0], context, classification);
        }

        return string.Join('|', _parts.Select(p => One(p, context, classification)));
    }

    private static string One((PartitionPart Part, string? Header) p, HttpContext context, Classification classification) => p.Part switch
    {
        PartitionPart.ApiKey => classification.ClientKey,
        PartitionPart.ClientAddress => "ip:" + (context.Connection.RemoteIpAddress?.ToString() ?? "unknown"),
        PartitionPart.Session => classification.SessionId ?? "(none)",
        PartitionPart.Route => classification.RouteId,
        PartitionPart.Header => context.Request.Headers[p.Header!] is { Count: > 0 } v ? "h:" + v[0] : "h:(none)",
        PartitionPart.Tenant => classification.Tenant is { } tenant ? "tenant:" + tenant.Name : "tenant:(none)",
        _ => "*",
    };
}

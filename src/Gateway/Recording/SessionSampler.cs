using System.IO.Hashing;
using System.Text;
using Microsoft.Extensions.Options;

namespace Gateway.Recording;

/// <summary>
/// Sampling by whole sessions: a session is in or out by a hash of its id (XXH3), so every exchange of a sampled
/// session is recorded and none of an unsampled one, on every gateway instance alike. The rate is per route, with a
/// default.
/// </summary>
internal sealed class SessionSampler
{
    private readonly double _rate;
    private readonly Dictionary<string, double> _routes;

    public SessionSampler(IOptions<RecordingOptions> options)
    {
        _rate = options.Value.Sampling.Rate;
        _routes = new Dictionary<string, double>(options.Value.Sampling.Routes, StringComparer.Ordinal);
    }

    /// <summary>Whether the session's exchanges on this route are recorded.</summary>
    public bool Includes(string? routeId, string sessionId)
    {
        var rate = routeId is not null && _routes.TryGetValue(routeId, out var r) ? r : _rate;
        if (rate >= 1)
        {
            return true;
        }

        if (rate <= 0)
        {
            return false;
        }

        return Bucket(sessionId) < rate;
    }

    /// <summary>The session's place in [0, 1): the XXH3 hash of its UTF-8 id, scaled.</summary>
    public static double Bucket(string sessionId)
    {
        var bytes = Encoding.UTF8.GetBytes(sessionId);
        return (XxHash3.HashToUInt64(bytes) >> 11) * (1.0 / (1UL << 53));
    }
}

using System.Globalization;

namespace Gateway.Forwarding;

/// <summary>
/// Backend connection-pool settings that YARP's <c>HttpClient</c> cluster section does not carry, given as
/// cluster <c>Metadata</c> entries (<c>ReverseProxy:Clusters:{id}:Metadata:{key}</c>), each a .NET TimeSpan
/// (<c>00:02:00</c>) or a number of seconds.
/// </summary>
internal static class ClusterMetadata
{
    /// <summary>How long a pooled backend connection may live before it is replaced (DNS changes, load spreading). Default: infinite.</summary>
    public const string PooledConnectionLifetime = "PooledConnectionLifetime";

    /// <summary>How long an idle pooled backend connection is kept. Default: 1 minute.</summary>
    public const string PooledConnectionIdleTimeout = "PooledConnectionIdleTimeout";

    /// <summary>Bound on establishing a backend connection. Default: 15 seconds.</summary>
    public const string ConnectTimeout = "ConnectTimeout";

    /// <summary>The keys this class reads.</summary>
    public static readonly string[] Keys = [PooledConnectionLifetime, PooledConnectionIdleTimeout, ConnectTimeout];

    /// <summary>Parses a duration: a TimeSpan (<c>hh:mm:ss</c>), or seconds as a number; must be positive (or -1 / infinite for a lifetime).</summary>
    public static bool TryParseDuration(string? text, out TimeSpan value)
    {
        value = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        if (string.Equals(text, "infinite", StringComparison.OrdinalIgnoreCase) || text == "-1")
        {
            value = Timeout.InfiniteTimeSpan;
            return true;
        }

        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds))
        {
            if (seconds <= 0 || double.IsNaN(seconds) || seconds > TimeSpan.MaxValue.TotalSeconds)
            {
                return false;
            }

            value = TimeSpan.FromSeconds(seconds);
            return true;
        }

        return TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out value) && value > TimeSpan.Zero;
    }
}

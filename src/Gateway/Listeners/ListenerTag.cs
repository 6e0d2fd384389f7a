using Microsoft.AspNetCore.Connections;

namespace Gateway.Listeners;

/// <summary>
/// Tags every accepted connection with its listener (a connection middleware on each Kestrel endpoint), so a
/// request knows where it arrived without comparing ports. Stored in the connection's items, which Kestrel
/// exposes to every request of the connection (HTTP/1.1 and each HTTP/2 stream).
/// </summary>
internal static class ListenerTag
{
    /// <summary>The key in <see cref="BaseConnectionContext.Items"/>.</summary>
    public static readonly object Key = new();

    // Boxed once so that tagging a connection allocates nothing.
    private static readonly object[] s_boxed = Array.ConvertAll(ListenerNames.All, static n => (object)n);

    /// <summary>Connection middleware that tags connections accepted on <paramref name="name"/>.</summary>
    public static Func<ConnectionDelegate, ConnectionDelegate> Middleware(ListenerName name)
    {
        var boxed = s_boxed[(int)name];
        return next => connection =>
        {
            connection.Items[Key] = boxed;
            return next(connection);
        };
    }
}

using System.Net;
using System.Net.Sockets;

namespace Contracts.Hosting;

/// <summary>
/// Tells before a server starts whether a TCP port it is configured for is already taken, so that start-up can say so
/// in one line naming the key instead of letting the host log its bind failure with two stack traces. Kestrel still
/// reports a port taken between this check and its own bind (a race); callers keep handling that too.
/// </summary>
public static class PortProbe
{
    /// <summary>Whether another socket already listens on <paramref name="address"/>:<paramref name="port"/>.</summary>
    /// <param name="address">The address the server will bind.</param>
    /// <param name="port">The port, 1 to 65535 (0, any free port, is never in use).</param>
    public static bool IsInUse(IPAddress address, int port)
    {
        if (port is <= 0 or > IPEndPoint.MaxPort)
        {
            return false;
        }

        try
        {
            using var probe = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            probe.Bind(new IPEndPoint(address, port));
            return false;
        }
        catch (SocketException ex)
        {
            return ex.SocketErrorCode == SocketError.AddressAlreadyInUse;
        }
    }
}

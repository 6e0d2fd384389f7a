using System.Net;
using System.Net.Sockets;

namespace TestSupport;

/// <summary>Free TCP ports on the loopback interface, for processes that must be told their port up front.</summary>
public static class FreePort
{
    /// <summary>A port that was free a moment ago on 127.0.0.1 (the OS hands out ephemeral ports round-robin, so a race is unlikely).</summary>
    public static int Next()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

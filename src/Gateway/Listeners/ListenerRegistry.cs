using System.Net;
using System.Security.Cryptography.X509Certificates;
using KestrelListenOptions = Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions;

namespace Gateway.Listeners;

/// <summary>
/// The listeners as configured and, once Kestrel has started, as bound (port 0 resolved to the real port).
/// </summary>
internal sealed class ListenerRegistry
{
    private readonly Dictionary<ListenerName, Entry> _entries = [];

    public ListenerRegistry(ListenersOptions options, IReadOnlyDictionary<ListenerName, X509Certificate2> certificates)
    {
        Options = options;
        Certificates = certificates;
    }

    /// <summary>The validated listener options.</summary>
    public ListenersOptions Options { get; }

    /// <summary>Loaded certificates, per listener that has one.</summary>
    public IReadOnlyDictionary<ListenerName, X509Certificate2> Certificates { get; }

    /// <summary>The enabled listeners.</summary>
    public IEnumerable<ListenerName> Enabled => _entries.Keys;

    internal void Add(ListenerName name, KestrelListenOptions listenOptions, bool tls) => _entries[name] = new Entry(listenOptions, tls);

    /// <summary>
    /// The listener's address after start-up (<c>http://127.0.0.1:8080</c>), or null when it is not enabled.
    /// </summary>
    public Uri? GetAddress(ListenerName name)
    {
        if (!_entries.TryGetValue(name, out var entry) || entry.ListenOptions.EndPoint is not IPEndPoint ep)
        {
            return null;
        }

        var host = ep.Address.Equals(IPAddress.Any) ? "127.0.0.1"
            : ep.Address.Equals(IPAddress.IPv6Any) ? "[::1]"
            : ep.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{ep.Address}]" : ep.Address.ToString();
        return new Uri($"{(entry.Tls ? "https" : "http")}://{host}:{ep.Port}");
    }

    /// <summary>Whether the listener speaks TLS.</summary>
    public bool IsTls(ListenerName name) => _entries.TryGetValue(name, out var e) && e.Tls;

    private sealed record Entry(KestrelListenOptions ListenOptions, bool Tls);
}

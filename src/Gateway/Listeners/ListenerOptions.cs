using System.ComponentModel.DataAnnotations;
using System.Net;
using Gateway.Configuration;

namespace Gateway.Listeners;

/// <summary>
/// One listener, bound from <c>Gateway:Listeners:{Name}</c>.
/// </summary>
internal sealed record ListenerOptions
{
    /// <summary>Whether the listener is opened. Default true, except <c>Https</c>, which opens only when a certificate is configured.</summary>
    public bool? Enabled { get; set; }

    /// <summary>IP address to bind (<c>127.0.0.1</c>, <c>::1</c>, <c>0.0.0.0</c>, <c>::</c>) or <c>localhost</c>. Default loopback.</summary>
    public string Address { get; set; } = "127.0.0.1";

    /// <summary>TCP port, 0 to 65535; 0 asks the OS for a free port (tests).</summary>
    [Range(0, 65535)]
    public int Port { get; set; }

    /// <summary>Optional TLS certificate; when set the listener speaks TLS.</summary>
    public CertificateOptions? Certificate { get; set; }

    /// <summary>True when <see cref="Certificate"/> names a file.</summary>
    public bool HasCertificate => !string.IsNullOrWhiteSpace(Certificate?.Path);

    /// <summary>Parses <see cref="Address"/>; <c>localhost</c> maps to 127.0.0.1.</summary>
    public bool TryGetIPAddress(out IPAddress address)
    {
        if (string.Equals(Address, "localhost", StringComparison.OrdinalIgnoreCase))
        {
            address = IPAddress.Loopback;
            return true;
        }

        return IPAddress.TryParse(Address, out address!);
    }
}

/// <summary>
/// A TLS certificate: a PKCS#12 file (<c>.pfx</c>/<c>.p12</c>, with an optional <see cref="Password"/>) or a PEM
/// certificate with its PEM private key in <see cref="KeyPath"/>.
/// </summary>
internal sealed record CertificateOptions
{
    /// <summary>Path of the PFX file or of the PEM certificate (chain).</summary>
    public string? Path { get; set; }

    /// <summary>Path of the PEM private key; required for a PEM certificate, unused for PFX.</summary>
    public string? KeyPath { get; set; }

    /// <summary>Password of the PFX file or of an encrypted PEM key.</summary>
    public string? Password { get; set; }
}

/// <summary>
/// All listeners, bound from <c>Gateway:Listeners</c>. Defaults: Http 8080, Grpc 8081, WebSocket 8082,
/// Https 8443 (only with a certificate), Admin 8090, all on 127.0.0.1.
/// </summary>
internal sealed record ListenersOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Gateway:Listeners";

    public ListenerOptions Http { get; set; } = new() { Port = 8080 };

    public ListenerOptions Grpc { get; set; } = new() { Port = 8081 };

    public ListenerOptions WebSocket { get; set; } = new() { Port = 8082 };

    public ListenerOptions Https { get; set; } = new() { Port = 8443 };

    public ListenerOptions Admin { get; set; } = new() { Port = 8090 };

    /// <summary>The options of one listener.</summary>
    public ListenerOptions Get(ListenerName name) => name switch
    {
        ListenerName.Http => Http,
        ListenerName.Grpc => Grpc,
        ListenerName.WebSocket => WebSocket,
        ListenerName.Https => Https,
        ListenerName.Admin => Admin,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, null),
    };

    /// <summary>Whether the listener is opened (see <see cref="ListenerOptions.Enabled"/>).</summary>
    public bool IsEnabled(ListenerName name)
    {
        var o = Get(name);
        return o.Enabled ?? (name != ListenerName.Https || o.HasCertificate);
    }
}

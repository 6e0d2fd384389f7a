using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace TestSupport;

/// <summary>Certificates made at test time (never committed): a self-signed server certificate for 127.0.0.1 and localhost.</summary>
public static class TestCertificates
{
    /// <summary>
    /// Writes a self-signed certificate for <c>localhost</c> / <c>127.0.0.1</c> / <c>::1</c> into <paramref name="directory"/> as
    /// <c>server.pfx</c> (password <paramref name="password"/>) and as <c>server.pem</c> + <c>server.key</c>.
    /// </summary>
    /// <returns>The certificate (with its private key).</returns>
    public static X509Certificate2 CreateSelfSigned(string directory, string password = "test")
    {
        Directory.CreateDirectory(directory);
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        san.AddIpAddress(IPAddress.IPv6Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, false));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(7));

        File.WriteAllBytes(Path.Combine(directory, "server.pfx"), cert.Export(X509ContentType.Pfx, password));
        File.WriteAllText(Path.Combine(directory, "server.pem"), cert.ExportCertificatePem());
        File.WriteAllText(Path.Combine(directory, "server.key"), key.ExportPkcs8PrivateKeyPem());
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pfx, password), password);
    }
}

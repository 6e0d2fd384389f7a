using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Gateway.Listeners;

/// <summary>Loads a listener's TLS certificate (PFX, or PEM certificate + PEM key), reporting problems by key.</summary>
internal static class CertificateLoader
{
    /// <summary>Loads the certificate or adds an error naming <paramref name="key"/> (e.g. <c>Gateway:Listeners:Https:Certificate</c>).</summary>
    /// <returns>The certificate with its private key, or null when an error was added.</returns>
    public static X509Certificate2? TryLoad(CertificateOptions options, string key, List<string> errors)
    {
        var path = options.Path!;
        if (!File.Exists(path))
        {
            errors.Add($"{key}:Path: certificate file '{path}' does not exist.");
            return null;
        }

        try
        {
            var isPem = !string.IsNullOrWhiteSpace(options.KeyPath)
                || path.EndsWith(".pem", StringComparison.OrdinalIgnoreCase)
                || path.EndsWith(".crt", StringComparison.OrdinalIgnoreCase);
            if (!isPem)
            {
                return X509CertificateLoader.LoadPkcs12FromFile(path, options.Password, X509KeyStorageFlags.EphemeralKeySet);
            }

            if (string.IsNullOrWhiteSpace(options.KeyPath))
            {
                errors.Add($"{key}:KeyPath is required with the PEM certificate '{path}' (the private key file).");
                return null;
            }

            if (!File.Exists(options.KeyPath))
            {
                errors.Add($"{key}:KeyPath: key file '{options.KeyPath}' does not exist.");
                return null;
            }

            var cert = string.IsNullOrEmpty(options.Password)
                ? X509Certificate2.CreateFromPemFile(path, options.KeyPath)
                : X509Certificate2.CreateFromEncryptedPemFile(path, options.Password, options.KeyPath);
            if (!cert.HasPrivateKey)
            {
                errors.Add($"{key}: the certificate '{path}' has no private key.");
                return null;
            }

            return cert;
        }
        catch (Exception ex) when (ex is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            errors.Add($"{key}:Path: certificate '{path}' cannot be read: {ex.Message.TrimEnd('.')}.");
            return null;
        }
    }
}

using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Gateway.Tenants;

/// <summary>
/// API keys as the gateway keeps them: the SHA-256 of the key's UTF-8 bytes, 32 bytes, never the key. Configuration
/// writes one as <c>sha256:</c> and 64 hex digits (<c>printf %s "$KEY" | sha256sum</c>); keys made through the admin
/// API are <c>sk-</c> and 43 base64url characters of 32 random bytes (256 bits).
/// </summary>
internal static class ApiKeyHash
{
    /// <summary>The prefix of a configured key hash.</summary>
    public const string Prefix = "sha256:";

    /// <summary>The prefix of a key made by the gateway.</summary>
    public const string MadeKeyPrefix = "sk-";

    /// <summary>Bytes of a hash.</summary>
    public const int Size = SHA256.HashSizeInBytes;

    /// <summary>The longest presented key the gateway hashes (characters); a longer one is invalid without being hashed.</summary>
    public const int MaxKeyChars = 512;

    /// <summary>
    /// Hashes a presented key into <paramref name="hash"/> without allocating: the UTF-8 bytes go through a stack
    /// buffer (up to <see cref="MaxKeyChars"/> characters, 3 bytes each at most).
    /// </summary>
    /// <returns>False when the key is empty or longer than <see cref="MaxKeyChars"/> (nothing is hashed).</returns>
    public static bool TryHash(ReadOnlySpan<char> key, Span<byte> hash)
    {
        if (key.IsEmpty || key.Length > MaxKeyChars)
        {
            return false;
        }

        Span<byte> utf8 = stackalloc byte[MaxKeyChars * 3];
        var written = Encoding.UTF8.GetBytes(key, utf8);
        SHA256.HashData(utf8[..written], hash);
        CryptographicOperations.ZeroMemory(utf8[..written]); // the key does not stay on the stack
        return true;
    }

    /// <summary>The hash of <paramref name="key"/> as a new array.</summary>
    /// <exception cref="ArgumentException">The key is empty or longer than <see cref="MaxKeyChars"/>.</exception>
    public static byte[] Hash(string key)
    {
        var hash = new byte[Size];
        if (!TryHash(key, hash))
        {
            throw new ArgumentException($"An API key must have 1 to {MaxKeyChars} characters.", nameof(key));
        }

        return hash;
    }

    /// <summary>Parses <c>sha256:</c> and 64 hex digits (either case).</summary>
    /// <returns>False for anything else.</returns>
    public static bool TryParse(string? text, out byte[] hash)
    {
        hash = [];
        if (text is null || !text.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase) || text.Length != Prefix.Length + (Size * 2))
        {
            return false;
        }

        var hex = text.AsSpan(Prefix.Length);
        if (hex.ContainsAnyExcept(s_hex))
        {
            return false;
        }

        hash = Convert.FromHexString(hex);
        return true;
    }

    /// <summary>The 64 lower-case hex digits of a hash.</summary>
    public static string ToHex(ReadOnlySpan<byte> hash) => Convert.ToHexStringLower(hash);

    /// <summary>The first 8 bytes of a hash, the bucket a table looks it up by (the whole hash is then compared in constant time).</summary>
    public static ulong Bucket(ReadOnlySpan<byte> hash) => BinaryPrimitives.ReadUInt64LittleEndian(hash);

    /// <summary>A new key: <c>sk-</c> and 32 random bytes in base64url (256 bits from the OS's CSPRNG).</summary>
    public static string NewKey()
    {
        Span<byte> random = stackalloc byte[32];
        RandomNumberGenerator.Fill(random);
        var key = MadeKeyPrefix + Base64Url(random);
        CryptographicOperations.ZeroMemory(random);
        return key;
    }

    /// <summary>A new key id: <c>k</c> and 12 random hex digits (not derived from the key).</summary>
    public static string NewId()
    {
        Span<byte> random = stackalloc byte[6];
        RandomNumberGenerator.Fill(random);
        return "k" + Convert.ToHexStringLower(random);
    }

    /// <summary>The id of a configured key: <c>cfg-</c> and its index under <c>Gateway:Tenants:{tenant}:Keys</c>.</summary>
    public static string ConfiguredId(int index) => "cfg-" + index.ToString(CultureInfo.InvariantCulture);

    private static string Base64Url(ReadOnlySpan<byte> bytes) =>
        Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private static readonly SearchValues<char> s_hex = SearchValues.Create("0123456789abcdefABCDEF");
}

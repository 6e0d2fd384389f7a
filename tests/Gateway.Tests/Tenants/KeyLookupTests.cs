using System.Security.Cryptography;
using System.Text;
using Gateway.Tenants;
using Microsoft.AspNetCore.Http;

namespace Gateway.Tests.Tenants;

/// <summary>
/// The API key hot path: reading the credential, hashing it on the stack and finding it in the frozen table allocate
/// nothing; any key of any length is found or not, never an exception (claude-code-router#1626: near-miss tokens of any
/// length rejected without throwing). Constant-time comparison itself is a matter of code review (KeyTable.Find:
/// FixedTimeEquals on the whole hash of every entry of the bucket).
/// </summary>
public sealed class KeyLookupTests
{
    private static KeyTable Table(int keys, string known, out Tenant caller)
    {
        caller = new Tenant("acme", new TenantOptions(), Credential.ApiKey, "cfg-0");
        var entries = new List<KeyEntry> { new(ApiKeyHash.Hash(known), caller, Configured: true) };
        for (var i = 1; i < keys; i++)
        {
            entries.Add(new KeyEntry(RandomNumberGenerator.GetBytes(32), new Tenant("t" + i, new TenantOptions(), Credential.ApiKey, "cfg-" + i), Configured: true));
        }

        return new KeyTable(entries);
    }

    [Fact]
    public void Reading_hashing_and_finding_a_key_allocates_nothing()
    {
        const string key = "sk-0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
        var table = Table(1000, key, out var caller);
        var headers = new HeaderDictionary { ["Authorization"] = "Bearer " + key };

        static KeyEntry? Lookup(IHeaderDictionary headers, KeyTable table)
        {
            AuthStep.TryReadCredential(headers, out var source, out var range, out _);
            Span<byte> hash = stackalloc byte[ApiKeyHash.Size];
            ApiKeyHash.TryHash(source.AsSpan()[range], hash);
            return table.Find(hash);
        }

        for (var i = 0; i < 100; i++)
        {
            Assert.Same(caller, Lookup(headers, table)?.Caller); // warm (JIT, tiering)
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            Lookup(headers, table);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Theory]
    [InlineData("")]
    [InlineData("x")]
    [InlineData("sk-0123456789abcdefghijklmnopqrstuvwxyzABCDEF")] // one character short of the known key
    [InlineData("sk-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH")] // one too many
    [InlineData("ключ🔑")]
    public void Near_misses_of_any_length_are_not_found(string guess)
    {
        var table = Table(10, "sk-0123456789abcdefghijklmnopqrstuvwxyzABCDEFG", out _);
        Span<byte> hash = stackalloc byte[ApiKeyHash.Size];
        Assert.True(!ApiKeyHash.TryHash(guess, hash) || table.Find(hash) is null);
    }

    [Fact]
    public void A_key_longer_than_the_limit_is_not_hashed_and_the_configured_form_parses_either_case()
    {
        Span<byte> hash = stackalloc byte[ApiKeyHash.Size];
        Assert.False(ApiKeyHash.TryHash(new string('k', ApiKeyHash.MaxKeyChars + 1), hash));
        var hex = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("k")));
        Assert.True(ApiKeyHash.TryParse("sha256:" + hex.ToUpperInvariant(), out var parsed));
        Assert.Equal(SHA256.HashData(Encoding.UTF8.GetBytes("k")), parsed);
        Assert.False(ApiKeyHash.TryParse("sha256:" + hex[..63] + "g", out _));
        Assert.False(ApiKeyHash.TryParse("sha512:" + hex, out _));
    }
}

using System.Collections.Frozen;
using System.Security.Cryptography;

namespace Gateway.Tenants;

/// <summary>One API key the gateway accepts: its hash, and the caller it authenticates.</summary>
/// <param name="Hash">SHA-256 of the key, 32 bytes.</param>
/// <param name="Caller">The tenant, with the key's id (made once, so a lookup allocates nothing).</param>
/// <param name="Configured">True for a key from <c>Gateway:Tenants:{tenant}:Keys</c>; false for one made through the admin API.</param>
internal sealed record KeyEntry(byte[] Hash, Tenant Caller, bool Configured);

/// <summary>
/// The API keys in force, immutable: a frozen dictionary from the first 8 bytes of a key's hash to the entries in that
/// bucket; a lookup hashes the presented key once (<see cref="ApiKeyHash.TryHash"/>), finds the bucket, and compares
/// the whole 32-byte hash with <see cref="CryptographicOperations.FixedTimeEquals"/>, so the time taken does not depend
/// on how many bytes of a guess are right. (The bucket lookup itself sees only a hash of the guess, which an attacker
/// cannot steer towards a stored hash.)
/// </summary>
internal sealed class KeyTable
{
    private readonly FrozenDictionary<ulong, KeyEntry[]> _buckets;

    /// <summary>No keys.</summary>
    public static readonly KeyTable Empty = new([]);

    public KeyTable(IEnumerable<KeyEntry> entries)
    {
        var buckets = new Dictionary<ulong, List<KeyEntry>>();
        var count = 0;
        foreach (var entry in entries)
        {
            var bucket = ApiKeyHash.Bucket(entry.Hash);
            if (!buckets.TryGetValue(bucket, out var list))
            {
                buckets[bucket] = list = [];
            }

            list.Add(entry);
            count++;
        }

        _buckets = buckets.ToFrozenDictionary(static p => p.Key, static p => p.Value.ToArray());
        Count = count;
    }

    /// <summary>How many keys.</summary>
    public int Count { get; }

    /// <summary>The entry whose hash is <paramref name="hash"/>, or null.</summary>
    /// <param name="hash">SHA-256 of the presented key, 32 bytes.</param>
    public KeyEntry? Find(ReadOnlySpan<byte> hash)
    {
        if (!_buckets.TryGetValue(ApiKeyHash.Bucket(hash), out var bucket))
        {
            return null;
        }

        KeyEntry? found = null;
        foreach (var entry in bucket)
        {
            if (CryptographicOperations.FixedTimeEquals(entry.Hash, hash))
            {
                found = entry;
            }
        }

        return found;
    }
}

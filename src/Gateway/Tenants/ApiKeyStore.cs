using System.Collections.Concurrent;
using System.Globalization;
using Gateway.Configuration;
using StackExchange.Redis;

namespace Gateway.Tenants;

/// <summary>An API key made through the admin API, as the gateway keeps it (never the key).</summary>
/// <param name="Tenant">The tenant it belongs to.</param>
/// <param name="Id">Its id (<c>k</c> and 12 hex digits).</param>
/// <param name="Hash">SHA-256 of the key.</param>
/// <param name="Created">When it was made.</param>
internal sealed record MadeKey(string Tenant, string Id, byte[] Hash, DateTimeOffset Created);

/// <summary>What a key store call came to.</summary>
internal enum KeyStoreOutcome
{
    /// <summary>Done.</summary>
    Done,

    /// <summary>No such key.</summary>
    NotFound,

    /// <summary>Redis did not answer in time or failed: nothing changed.</summary>
    Unavailable,
}

/// <summary>
/// The API keys made through the admin API. With <c>Gateway:Shaping:Redis</c> they live in Redis, hashed, one hash per
/// tenant, <c>auth:{TENANT}:keys</c> (field: key id; value: the key's SHA-256 in hex, a space, its creation time in
/// Unix milliseconds), so every gateway sharing the Redis accepts them: a change is published on the channel
/// <c>auth:keys</c> (the tenant's name), on which every gateway re-reads at once, and each re-reads every
/// <c>Gateway:Auth:KeyRefreshInterval</c> anyway, in case a notification was lost. While Redis is unavailable the last
/// keys read stay in force (counted in <c>gateway_auth_key_store_errors_total</c>, logged once per outage), and
/// making or revoking a key answers 503. Without Redis they live in this gateway's memory (lost on restart).
/// </summary>
internal sealed partial class ApiKeyStore : BackgroundService
{
    /// <summary>The channel on which a change of a tenant's keys is announced.</summary>
    public static readonly RedisChannel Channel = RedisChannel.Literal("auth:keys");

    /// <summary>The longest a key store call waits for Redis.</summary>
    private static readonly TimeSpan RedisBudget = TimeSpan.FromSeconds(2);

    private readonly ConfigurationGate _gate;
    private readonly TimeProvider _time;
    private readonly ILogger<ApiKeyStore> _logger;
    private readonly ConcurrentDictionary<(string Tenant, string Id), MadeKey> _local = new();
    private TaskCompletionSource _wake = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _firstRead = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly string? _redisConfiguration;
    private ConnectionMultiplexer? _redis;
    private IReadOnlyList<MadeKey> _keys = [];
    private int _failing;

    public ApiKeyStore(ConfigurationGate gate, TimeProvider time, ILogger<ApiKeyStore> logger)
    {
        _gate = gate;
        _time = time;
        _logger = logger;
        _redisConfiguration = string.IsNullOrWhiteSpace(gate.Current.Shaping.Redis) ? null : gate.Current.Shaping.Redis;
    }

    /// <summary>Raised (on any thread) after <see cref="Keys"/> changed.</summary>
    public event Action? Changed;

    /// <summary>Raised for a failed Redis call, with its operation (<c>refresh</c>, <c>create</c>, <c>revoke</c>, <c>subscribe</c>).</summary>
    public event Action<string>? Failed;

    /// <summary>Whether the keys are shared through Redis (else kept in this gateway's memory).</summary>
    public bool IsShared => _redisConfiguration is not null;

    /// <summary>The made keys in force, every tenant's.</summary>
    public IReadOnlyList<MadeKey> Keys => Volatile.Read(ref _keys);

    /// <summary>Makes a key for <paramref name="tenant"/> (a configured tenant; the caller checks).</summary>
    /// <returns>The key in clear (shown once) and its record, or <see cref="KeyStoreOutcome.Unavailable"/>.</returns>
    public async Task<(KeyStoreOutcome Outcome, string? Key, MadeKey? Made)> CreateAsync(string tenant, CancellationToken cancellationToken)
    {
        var key = ApiKeyHash.NewKey();
        var made = new MadeKey(tenant, ApiKeyHash.NewId(), ApiKeyHash.Hash(key), _time.GetUtcNow());
        if (_redis is null && _redisConfiguration is null)
        {
            _local[(tenant, made.Id)] = made;
            Publish([.. _local.Values]);
            return (KeyStoreOutcome.Done, key, made);
        }

        var ok = await RunAsync("create", made, static async (db, m) =>
        {
            await db.HashSetAsync(HashKey(m.Tenant), m.Id, Value(m));
            await db.PublishAsync(Channel, m.Tenant);
            return true;
        }, cancellationToken);
        if (!ok)
        {
            return (KeyStoreOutcome.Unavailable, null, null);
        }

        await RefreshAsync(cancellationToken); // this gateway accepts it before the answer is sent
        return (KeyStoreOutcome.Done, key, made);
    }

    /// <summary>Revokes the key <paramref name="id"/> of <paramref name="tenant"/>.</summary>
    public async Task<KeyStoreOutcome> RevokeAsync(string tenant, string id, CancellationToken cancellationToken)
    {
        if (_redis is null && _redisConfiguration is null)
        {
            if (!_local.TryRemove((tenant, id), out _))
            {
                return KeyStoreOutcome.NotFound;
            }

            Publish([.. _local.Values]);
            return KeyStoreOutcome.Done;
        }

        var removed = false;
        var ok = await RunAsync("revoke", (tenant, id), async (db, s) =>
        {
            removed = await db.HashDeleteAsync(HashKey(s.tenant), s.id);
            await db.PublishAsync(Channel, s.tenant);
            return true;
        }, cancellationToken);
        if (!ok)
        {
            return KeyStoreOutcome.Unavailable;
        }

        await RefreshAsync(cancellationToken); // refused here before the answer is sent
        return removed ? KeyStoreOutcome.Done : KeyStoreOutcome.NotFound;
    }

    /// <summary>The Redis key of a tenant's made keys: <c>auth:{TENANT}:keys</c> (the hash tag keeps a tenant on one Redis Cluster slot).</summary>
    public static RedisKey HashKey(string tenant) => $"auth:{{{tenant}}}:keys";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (_redisConfiguration is null)
        {
            return;
        }

        try
        {
            var options = Contracts.Recording.RedisConnection.Parse(_redisConfiguration);
            options.AbortOnConnectFail = false;
            options.ConnectTimeout = Math.Min(options.ConnectTimeout, 2000);
            _redis = await ConnectionMultiplexer.ConnectAsync(options);
            var subscriber = _redis.GetSubscriber();
            await subscriber.SubscribeAsync(Channel, (_, _) => Wake());
            _redis.ConnectionRestored += (_, _) => Wake(); // the subscription is restored too; keys may have changed meanwhile
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or ArgumentException)
        {
            Failing("subscribe", ShapingCause(ex));
        }

        while (!stoppingToken.IsCancellationRequested)
        {
            await RefreshAsync(stoppingToken);
            _firstRead.TrySetResult();
            try
            {
                // Woken by a notification, or at the refresh interval: whichever comes first.
                var wake = Volatile.Read(ref _wake);
                await wake.Task.WaitAsync(_gate.Current.Auth.KeyRefreshInterval, _time, stoppingToken);
            }
            catch (TimeoutException)
            {
                // the poll, in case a notification was lost
            }
            catch (OperationCanceledException)
            {
                return;
            }

            if (Volatile.Read(ref _wake).Task.IsCompleted)
            {
                Volatile.Write(ref _wake, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)); // before reading, so a change during the read wakes the next wait
            }
        }
    }

    /// <summary>Reads every configured tenant's made keys from Redis; on failure the last known keys stay.</summary>
    public async Task RefreshAsync(CancellationToken cancellationToken)
    {
        if (_redis is null)
        {
            return;
        }

        var tenants = _gate.Current.Tenants.Keys.ToArray();
        var read = new List<MadeKey>();
        var ok = await RunAsync("refresh", (tenants, read), static async (db, s) =>
        {
            var batch = db.CreateBatch();
            var reads = new Task<HashEntry[]>[s.tenants.Length];
            for (var i = 0; i < s.tenants.Length; i++)
            {
                reads[i] = batch.HashGetAllAsync(HashKey(s.tenants[i]));
            }

            batch.Execute();
            await Task.WhenAll(reads);
            for (var i = 0; i < s.tenants.Length; i++)
            {
                foreach (var entry in reads[i].Result)
                {
                    if (Parse(s.tenants[i], entry) is { } key)
                    {
                        s.read.Add(key);
                    }
                }
            }

            return true;
        }, cancellationToken);
        if (ok)
        {
            Publish(read);
        }
    }

    private void Publish(List<MadeKey> keys)
    {
        var old = Keys;
        if (old.Count == keys.Count && SameKeys(old, keys))
        {
            return;
        }

        keys.Sort(static (a, b) => a.Created.CompareTo(b.Created));
        Volatile.Write(ref _keys, keys);
        Changed?.Invoke();
    }

    private static bool SameKeys(IReadOnlyList<MadeKey> a, List<MadeKey> b)
    {
        var set = new HashSet<(string, string)>();
        foreach (var k in a)
        {
            set.Add((k.Tenant, k.Id));
        }

        foreach (var k in b)
        {
            if (!set.Contains((k.Tenant, k.Id)))
            {
                return false;
            }
        }

        return true;
    }

    private async Task<bool> RunAsync<TState>(string operation, TState state, Func<IDatabase, TState, Task<bool>> call, CancellationToken cancellationToken)
    {
        if (_redis is not { IsConnected: true } redis)
        {
            Failing(operation, "not connected");
            return false;
        }

        try
        {
            await call(redis.GetDatabase(), state).WaitAsync(RedisBudget, _time, cancellationToken);
            if (Interlocked.Exchange(ref _failing, 0) == 1)
            {
                Log.StoreRecovered(_logger);
            }

            return true;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or ObjectDisposedException)
        {
            Failing(operation, ShapingCause(ex));
            return false;
        }
    }

    private void Failing(string operation, string cause)
    {
        Failed?.Invoke(operation);
        if (Interlocked.Exchange(ref _failing, 1) == 0)
        {
            Log.StoreUnavailable(_logger, operation, cause, Keys.Count);
        }
    }

    private void Wake() => Volatile.Read(ref _wake).TrySetResult();

    private static string ShapingCause(Exception ex) => Shaping.Policies.ShapingRedis.Cause(ex);

    private static RedisValue Value(MadeKey key) =>
        $"{ApiKeyHash.ToHex(key.Hash)} {key.Created.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture)}";

    private static MadeKey? Parse(string tenant, HashEntry entry)
    {
        var text = entry.Value.ToString();
        var space = text.IndexOf(' ', StringComparison.Ordinal);
        var hex = space < 0 ? text : text[..space];
        if (!ApiKeyHash.TryParse(ApiKeyHash.Prefix + hex, out var hash))
        {
            return null; // not written by a gateway; ignored
        }

        var created = space > 0 && long.TryParse(text.AsSpan(space + 1), NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms)
            ? DateTimeOffset.FromUnixTimeMilliseconds(ms)
            : DateTimeOffset.UnixEpoch;
        return new MadeKey(tenant, entry.Name.ToString(), hash, created);
    }

    /// <summary>
    /// Starts reading the made keys and waits for the first read (at most <see cref="RedisBudget"/>), so the gateway
    /// does not open its listeners refusing keys that Redis holds; with Redis unreachable it starts anyway.
    /// </summary>
    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        await base.StartAsync(cancellationToken);
        if (_redisConfiguration is not null)
        {
            try
            {
                await _firstRead.Task.WaitAsync(RedisBudget + RedisBudget, _time, cancellationToken);
            }
            catch (TimeoutException)
            {
                // Redis is slow or down: counted and logged by the refresh; the configured keys work meanwhile.
            }
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        if (_redis is not null)
        {
            await _redis.DisposeAsync();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 6101, Level = LogLevel.Warning, Message = "Redis for API keys is unavailable ({Operation}: {Cause}); the configured keys and the {Known} made keys last read stay in force, and keys cannot be made or revoked until it answers.")]
        public static partial void StoreUnavailable(ILogger logger, string operation, string cause, int known);

        [LoggerMessage(EventId = 6102, Level = LogLevel.Information, Message = "Redis for API keys answers again; made and revoked keys are shared again.")]
        public static partial void StoreRecovered(ILogger logger);
    }
}

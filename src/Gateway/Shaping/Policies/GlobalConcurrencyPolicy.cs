using System.Collections.Concurrent;
using System.Globalization;
using Contracts.Wire;
using StackExchange.Redis;

namespace Gateway.Shaping.Policies;

/// <summary>
/// A fleet-wide concurrency policy (<c>Kind: Concurrency, Scope: Global</c>): at most <c>PermitLimit</c> exchanges in
/// flight per partition across every gateway sharing the Redis. Each admitted exchange holds a lease, a member of the
/// sorted set <c>cl:{POLICY}:PARTITION</c> scored by its expiry on Redis's clock (<c>TIME</c>); an acquire first drops
/// the expired members, so a lease whose gateway died (SIGKILL, power loss) blocks nobody for longer than
/// <c>LeaseTtl</c>. The holder renews all of its live leases of the policy in one script call every <c>LeaseTtl</c>/3
/// while the exchanges live (long streams and WebSocket sessions included), and removes its lease when the exchange
/// ends. (One call per policy rather than one for all policies: a policy's keys share its hash tag, so the call stays
/// on one Redis Cluster slot.) This is the "lease with expiry in a sorted set" semaphore of Redis's documentation
/// ("Distributed locks with Redis"; the counting-semaphore variant of Carlson, "Redis in Action", §6.3).
/// While Redis is unavailable (<see cref="ShapingRedis"/>) the policy follows its FailMode (local share: PermitLimit /
/// <c>Instances</c> in this gateway). An acquire that timed out may still run when a frozen Redis resumes: its lease is
/// removed (<c>ZREM</c>) once Redis answers again (a compensation of <see cref="ShapingRedis.RunAsync{TState, T}"/>), so it
/// does not block the partition for <c>LeaseTtl</c> (stranger review; litellm#27955, litellm#30020). A renewal re-adds a
/// live lease that Redis lost (a restart without persistence; litellm#16011).
/// </summary>
internal sealed class GlobalConcurrencyPolicy : ShapingPolicy
{
    // KEYS[1] the partition's set; ARGV[1] limit, ARGV[2] ttl ms, ARGV[3] lease id. Returns { admitted, held }.
    private const string AcquireScript = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local ttl = tonumber(ARGV[2])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
        local held = redis.call('ZCARD', KEYS[1])
        if held >= tonumber(ARGV[1]) then
          return { 0, held }
        end
        redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
        redis.call('PEXPIRE', KEYS[1], ttl + 1000)
        return { 1, held + 1 }
        """;

    // KEYS: one set per lease; ARGV[1] ttl ms, ARGV[i + 1] the lease id in KEYS[i]. Every lease is (re-)added, not only
    // the ones still there: a Redis restarted without persistence (or a lease that expired while Redis was unreachable)
    // loses the leases of live exchanges, and the fleet's count must hold them again within one renewal
    // (stranger review, litellm#16011). Returns the number of leases that were missing and re-added.
    private const string RenewScript = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local ttl = tonumber(ARGV[1])
        local readded = 0
        for i, key in ipairs(KEYS) do
          readded = readded + redis.call('ZADD', key, now + ttl, ARGV[i + 1])
          redis.call('PEXPIRE', key, ttl + 1000)
        end
        return readded
        """;

    private static readonly string s_instance = Guid.NewGuid().ToString("N")[..12];
    private static long s_nextLease;

    private readonly ShapingRedis _redis;
    private readonly ShapingPolicy _localShare;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, RedisKey> _live = new(StringComparer.Ordinal);
    private readonly Lock _timerLock = new();
    private ITimer? _renewal;
    private int _renewing;

    public GlobalConcurrencyPolicy(string name, PolicyOptions options, PartitionKey partition, ShapingRedis redis, ShapingPolicy localShare, TimeProvider time)
        : base(name, options, partition)
    {
        _redis = redis;
        _localShare = localShare;
        _time = time;
    }

    /// <summary>Leases this gateway holds now (for tests and diagnostics).</summary>
    public int LiveLeases => _live.Count;

    public override async ValueTask<PolicyDecision> AcquireAsync(string partition, long cost, CancellationToken cancellationToken)
    {
        var key = new RedisKey($"cl:{{{Name}}}:{partition}");
        var id = string.Create(CultureInfo.InvariantCulture, $"{s_instance}:{Interlocked.Increment(ref s_nextLease)}");
        var (ok, admitted) = await _redis.RunAsync((Key: key, Id: id, Options),
            static async (db, s) =>
            {
                var r = (RedisResult[])(await db.ScriptEvaluateAsync(AcquireScript, [s.Key],
                    [s.Options.PermitLimit, (long)s.Options.LeaseTtl.TotalMilliseconds, s.Id]))!;
                return (long)r[0] == 1;
            }, cancellationToken,
            // Stranger review (litellm#27955, #30020): an acquire that timed out runs when a frozen Redis resumes and adds
            // a lease nobody renews or releases, blocking the partition for LeaseTtl; it is removed once Redis answers.
            static (db, s) => db.SortedSetRemoveAsync(s.Key, s.Id, CommandFlags.FireAndForget));
        if (ok)
        {
            if (!admitted)
            {
                return PolicyDecision.Refuse(GatewayErrorCodes.Concurrency, TimeSpan.FromSeconds(1), null);
            }

            _live[id] = key;
            StartRenewal();
            return PolicyDecision.Admit(null, new Lease(this, key, id));
        }

        return Options.FailMode switch
        {
            FailMode.Open => PolicyDecision.Admit(null),
            FailMode.Closed => PolicyDecision.Refuse(GatewayErrorCodes.RedisUnavailable, TimeSpan.FromSeconds(1), null),
            _ => await _localShare.AcquireAsync(partition, cost, cancellationToken),
        };
    }

    private void Release(RedisKey key, string id)
    {
        if (_live.TryRemove(id, out _))
        {
            // Not awaited: the exchange is over. A release Redis never gets expires with the lease's TTL.
            _redis.Send((Key: key, Id: id), static (db, s) => db.SortedSetRemoveAsync(s.Key, s.Id, CommandFlags.FireAndForget));
        }
    }

    private void StartRenewal()
    {
        lock (_timerLock)
        {
            if (_renewal is null)
            {
                var period = Options.LeaseTtl / 3;
                _renewal = _time.CreateTimer(static s => ((GlobalConcurrencyPolicy)s!).Renew(), this, period, period);
            }
        }
    }

    private void Renew()
    {
        if (_live.IsEmpty)
        {
            lock (_timerLock)
            {
                if (_live.IsEmpty)
                {
                    _renewal?.Dispose();
                    _renewal = null;
                    return;
                }
            }
        }

        if (Interlocked.Exchange(ref _renewing, 1) == 0)
        {
            _ = RenewAsync(); // never throws; at most one at a time
        }
    }

    private async Task RenewAsync()
    {
        try
        {
            var keys = new List<RedisKey>(_live.Count);
            var args = new List<RedisValue>(_live.Count + 1) { (long)Options.LeaseTtl.TotalMilliseconds };
            foreach (var (id, key) in _live)
            {
                keys.Add(key);
                args.Add(id);
            }

            if (keys.Count > 0)
            {
                await _redis.RunAsync((Keys: keys.ToArray(), Args: args.ToArray()), static (db, s) => db.ScriptEvaluateAsync(RenewScript, s.Keys, s.Args), CancellationToken.None);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
        {
            // the connection was replaced by a reload (the leases then expire with their TTL) or the gateway stops
        }
        finally
        {
            Volatile.Write(ref _renewing, 0);
        }
    }

    /// <summary>Partitions of the local share (kept while Redis is unavailable); the fleet-wide ones live in Redis, with a TTL.</summary>
    public override int? Partitions => _localShare.Partitions;

    public override int Queued => _localShare.Queued;

    public override void EvictIdle() => _localShare.EvictIdle();

    protected override async ValueTask ReleaseLimitersAsync()
    {
        lock (_timerLock)
        {
            _renewal?.Dispose();
            _renewal = null;
        }

        await _localShare.DisposeAsync();
    }

    /// <summary>One exchange's lease; disposing it (when the exchange ends) removes it from Redis.</summary>
    private sealed class Lease(GlobalConcurrencyPolicy policy, RedisKey key, string id) : IDisposable
    {
        public void Dispose() => policy.Release(key, id);
    }
}

using System.Globalization;
using System.Runtime.CompilerServices;
using StackExchange.Redis;

namespace Contracts.Recording;

/// <summary>
/// Recordings in Redis Streams, through StackExchange.Redis. Key layout (every key of one recording shares the
/// hash tag <c>{NAME}</c>, so a recording lives on one Redis Cluster slot and its batch script is cluster-safe):
/// <list type="table">
/// <item><term><c>rec:{NAME}:x</c></term><description>stream of exchanges, one entry per exchange, field <c>x</c> = the JSON of <see cref="ExchangeRecord"/></description></item>
/// <item><term><c>rec:{NAME}:s</c></term><description>hash: session id → JSON of <see cref="SessionRecord"/> (latest state)</description></item>
/// <item><term><c>rec:{NAME}:si:{SESSION}</c></term><description>list: the stream ids of one session's exchanges, in order (the per-session index)</description></item>
/// <item><term><c>rec:{NAME}:meta</c></term><description>hash: <c>state</c>, <c>created</c>, <c>started</c>, <c>stopped</c>, <c>bytes</c>, <c>first</c>, <c>last</c> (Unix µs)</description></item>
/// <item><term><c>rec:{NAME}:b:{BATCH}</c></term><description>marker of an appended batch, one hour: a retried batch is appended once</description></item>
/// <item><term><c>rec:index</c></term><description>set of recording names; no TTL: a name whose recording expired is removed when recordings are listed</description></item>
/// </list>
/// Retention (<see cref="RedisRetention"/>): by length (<c>XADD MAXLEN ~</c>), by age (<c>XADD MINID ~</c>, ids are
/// millisecond timestamps) and/or a TTL refreshed on every write to all the recording's keys.
/// </summary>
public sealed class RedisRecordingStore : IRecordingStore
{
    /// <summary>
    /// The marker of one appended batch (its first exchange's id and its size): set, for an hour, by the script that
    /// appends the batch, so that a retried batch is appended once.
    /// </summary>
    public static RedisKey BatchKey(string name, string batch) => $"rec:{{{name}}}:b:{batch}";

    /// <summary>The set of recording names.</summary>
    public const string IndexKey = "rec:index";

    // One script call appends a batch: stream entries, per-session index, sessions and meta, atomically.
    // KEYS: 1 stream, 2 sessions hash, 3 meta, 4.. one per-session index key per exchange (same order as the JSONs).
    // ARGV: 1 maxlen (0 = none), 2 minid ('' = none), 3 ttl seconds (0 = none), 4 n, 5..4+n exchange JSONs,
    //       then m, then m pairs (session id, session JSON), then bytes, first, last (Unix µs).
    private const string AppendScript = """
        -- A batch is appended once: a writer that retries a batch whose first try went through (its answer lost in a
        -- freeze or a timeout) finds the batch's marker and appends nothing.
        if not redis.call('SET', KEYS[4], '1', 'NX', 'EX', 3600) then return -1 end
        local maxlen = tonumber(ARGV[1])
        local minid = ARGV[2]
        local ttl = tonumber(ARGV[3])
        local n = tonumber(ARGV[4])
        for i = 1, n do
          local id
          if maxlen > 0 then
            id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'x', ARGV[4 + i])
          elseif minid ~= '' then
            id = redis.call('XADD', KEYS[1], 'MINID', '~', minid, '*', 'x', ARGV[4 + i])
          else
            id = redis.call('XADD', KEYS[1], '*', 'x', ARGV[4 + i])
          end
          redis.call('RPUSH', KEYS[4 + i], id)
          if ttl > 0 then redis.call('EXPIRE', KEYS[4 + i], ttl) end
        end
        local p = 5 + n
        local m = tonumber(ARGV[p])
        for j = 1, m do
          redis.call('HSET', KEYS[2], ARGV[p + 2 * j - 1], ARGV[p + 2 * j])
        end
        local q = p + 2 * m + 1
        -- A Redis that restarted empty while the recording ran loses its meta: appending brings it back.
        redis.call('HSETNX', KEYS[3], 'state', 'recording')
        redis.call('HSETNX', KEYS[3], 'created', ARGV[q + 1])
        redis.call('HINCRBY', KEYS[3], 'bytes', ARGV[q])
        if n > 0 then
          redis.call('HSETNX', KEYS[3], 'first', ARGV[q + 1])
          redis.call('HSET', KEYS[3], 'last', ARGV[q + 2])
        end
        if ttl > 0 then
          redis.call('EXPIRE', KEYS[1], ttl)
          redis.call('EXPIRE', KEYS[2], ttl)
          redis.call('EXPIRE', KEYS[3], ttl)
        end
        return n
        """;

    private readonly IConnectionMultiplexer _redis;
    private readonly bool _ownsConnection;
    private readonly RedisRetention _retention;
    private readonly TimeProvider _time;

    /// <summary>Creates a store over an existing connection (not disposed by the store).</summary>
    public RedisRecordingStore(IConnectionMultiplexer redis, RedisRetention? retention = null, TimeProvider? time = null)
        : this(redis, ownsConnection: false, retention, time)
    {
    }

    private RedisRecordingStore(IConnectionMultiplexer redis, bool ownsConnection, RedisRetention? retention, TimeProvider? time)
    {
        _redis = redis;
        _ownsConnection = ownsConnection;
        _retention = retention ?? new RedisRetention();
        _time = time ?? TimeProvider.System;
    }

    /// <summary>
    /// Connects to Redis (a connection string or <c>redis://</c> URL, see <see cref="RedisConnection.Parse"/>) and
    /// returns a store that owns the connection. The connection reconnects by itself; when Redis is down, calls fail
    /// with <see cref="RedisConnectionException"/> until it returns.
    /// </summary>
    /// <exception cref="ArgumentException">The connection text is invalid.</exception>
    public static async Task<RedisRecordingStore> ConnectAsync(string configuration, RedisRetention? retention = null, TimeProvider? time = null)
    {
        var redis = await ConnectionMultiplexer.ConnectAsync(RedisConnection.Parse(configuration));
        return new RedisRecordingStore(redis, ownsConnection: true, retention, time);
    }

    /// <inheritdoc/>
    public string Kind => "redis";

    /// <summary>The stream key of a recording.</summary>
    public static RedisKey StreamKey(string name) => $"rec:{{{name}}}:x";

    /// <summary>The sessions hash key of a recording.</summary>
    public static RedisKey SessionsKey(string name) => $"rec:{{{name}}}:s";

    /// <summary>The per-session index key (list of stream ids).</summary>
    public static RedisKey SessionIndexKey(string name, string sessionId) => $"rec:{{{name}}}:si:{sessionId}";

    /// <summary>The meta hash key of a recording.</summary>
    public static RedisKey MetaKey(string name) => $"rec:{{{name}}}:meta";

    private IDatabase Db => _redis.GetDatabase();

    /// <inheritdoc/>
    public async Task StartAsync(string name, CancellationToken cancellationToken)
    {
        RecordingNames.Validate(name);
        var now = NowMicros();
        var batch = Db.CreateBatch();
        var t1 = batch.HashSetAsync(MetaKey(name), [new("state", RecordingStates.Recording), new("started", now)]);
        var t2 = batch.HashSetAsync(MetaKey(name), "created", now, When.NotExists);
        var t3 = batch.SetAddAsync(IndexKey, name);
        batch.Execute();
        await Task.WhenAll(t1, t2, t3).WaitAsync(cancellationToken);
    }

    /// <inheritdoc/>
    public async Task StopAsync(string name, CancellationToken cancellationToken)
    {
        RecordingNames.Validate(name);
        await Db.HashSetAsync(MetaKey(name), [new("state", RecordingStates.Stopped), new("stopped", NowMicros())]).WaitAsync(cancellationToken);
    }

    /// <inheritdoc/>
    public async Task<long> AppendAsync(string name, IReadOnlyList<ExchangeRecord> exchanges, IReadOnlyList<SessionRecord> sessions, CancellationToken cancellationToken)
    {
        RecordingNames.Validate(name);
        var keys = new RedisKey[4 + exchanges.Count];
        keys[0] = StreamKey(name);
        keys[1] = SessionsKey(name);
        keys[2] = MetaKey(name);
        keys[3] = BatchKey(name, exchanges.Count > 0 ? $"{exchanges[0].Id}:{exchanges.Count}" : Guid.NewGuid().ToString("N"));
        var args = new RedisValue[4 + exchanges.Count + 1 + (2 * sessions.Count) + 3];
        args[0] = _retention.MaxLength ?? 0;
        args[1] = _retention.MaxAge is { } age ? $"{Math.Max(0, _time.GetUtcNow().ToUnixTimeMilliseconds() - (long)age.TotalMilliseconds)}-0" : string.Empty;
        args[2] = _retention.Ttl is { } ttl ? (long)Math.Ceiling(ttl.TotalSeconds) : 0;
        args[3] = exchanges.Count;
        long bytes = 0, first = 0, last = 0;
        for (var i = 0; i < exchanges.Count; i++)
        {
            var json = RecordingSerializer.Serialize(exchanges[i]);
            bytes += json.Length;
            args[4 + i] = json;
            keys[4 + i] = SessionIndexKey(name, exchanges[i].SessionId);
            if (i == 0)
            {
                first = exchanges[i].Timing.StartUnixMicros;
            }

            last = exchanges[i].Timing.StartUnixMicros;
        }

        var p = 4 + exchanges.Count;
        args[p] = sessions.Count;
        for (var j = 0; j < sessions.Count; j++)
        {
            args[p + 1 + (2 * j)] = sessions[j].SessionId;
            args[p + 2 + (2 * j)] = RecordingSerializer.Serialize(sessions[j]);
        }

        var q = p + 1 + (2 * sessions.Count);
        args[q] = bytes;
        args[q + 1] = first;
        args[q + 2] = last;
        var batch = Db.CreateBatch();
        var append = batch.ScriptEvaluateAsync(AppendScript, keys, args);
        var index = batch.SetAddAsync(IndexKey, name); // idempotent: a Redis that restarted empty learns the name again
        batch.Execute();
        await Task.WhenAll(append, index).WaitAsync(cancellationToken);
        return bytes;
    }

    /// <inheritdoc/>
    public async Task<IReadOnlyList<RecordingInfo>> ListAsync(CancellationToken cancellationToken)
    {
        var names = await Db.SetMembersAsync(IndexKey).WaitAsync(cancellationToken);
        var list = new List<RecordingInfo>(names.Length);
        foreach (var name in names.Select(static n => n.ToString()).Order(StringComparer.Ordinal))
        {
            if (RecordingNames.IsValid(name) && await GetAsync(name, cancellationToken) is { } info)
            {
                list.Add(info);
            }
            else
            {
                // The index has no TTL of its own (it holds every recording's name): a name whose recording's keys expired
                // with Retention:Ttl, or that is not a valid name, is removed here, so the index lives as long as its recordings.
                await Db.SetRemoveAsync(IndexKey, name).WaitAsync(cancellationToken);
            }
        }

        return list;
    }

    /// <inheritdoc/>
    public async Task<RecordingInfo?> GetAsync(string name, CancellationToken cancellationToken)
    {
        RecordingNames.Validate(name);
        var batch = Db.CreateBatch();
        var meta = batch.HashGetAllAsync(MetaKey(name));
        var count = batch.StreamLengthAsync(StreamKey(name));
        var sessions = batch.HashLengthAsync(SessionsKey(name));
        batch.Execute();
        await Task.WhenAll(meta, count, sessions).WaitAsync(cancellationToken);
        var fields = meta.Result.ToDictionary(static e => e.Name.ToString(), static e => e.Value);
        if (fields.Count == 0 && count.Result == 0)
        {
            return null;
        }

        return new RecordingInfo
        {
            Name = name,
            State = fields.TryGetValue("state", out var s) ? s.ToString() : RecordingStates.Stopped,
            Count = count.Result,
            Bytes = Long(fields, "bytes") ?? 0,
            Sessions = sessions.Result,
            FirstUnixMicros = Long(fields, "first"),
            LastUnixMicros = Long(fields, "last"),
            Store = Kind,
        };

        static long? Long(Dictionary<string, RedisValue> fields, string key) =>
            fields.TryGetValue(key, out var v) && long.TryParse(v.ToString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : null;
    }

    /// <inheritdoc/>
    public async Task<IReadOnlyList<SessionRecord>> ReadSessionsAsync(string name, CancellationToken cancellationToken)
    {
        RecordingNames.Validate(name);
        var entries = await Db.HashGetAllAsync(SessionsKey(name)).WaitAsync(cancellationToken);
        var list = new List<SessionRecord>(entries.Length);
        foreach (var e in entries)
        {
            try
            {
                list.Add(RecordingSerializer.DeserializeSession((byte[])e.Value!));
            }
            catch (RecordingFormatException)
            {
                // A corrupt session entry loses only its summary; its exchanges still carry the session id.
            }
        }

        return [.. list.OrderBy(static s => s.FirstSeenUnixMicros)];
    }

    /// <summary>The stream ids of one session's exchanges, in order (the per-session index).</summary>
    public async Task<IReadOnlyList<string>> ReadSessionIndexAsync(string name, string sessionId, CancellationToken cancellationToken)
    {
        RecordingNames.Validate(name);
        var ids = await Db.ListRangeAsync(SessionIndexKey(name, sessionId)).WaitAsync(cancellationToken);
        return [.. ids.Select(static i => i.ToString())];
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<StoredExchange> ReadExchangesAsync(string name, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        RecordingNames.Validate(name);
        const int Page = 500;
        RedisValue from = "-";
        var exclusive = false;
        while (true)
        {
            var entries = await Db.StreamRangeAsync(StreamKey(name), exclusive ? "(" + from : from, "+", Page).WaitAsync(cancellationToken);
            foreach (var entry in entries)
            {
                var id = entry.Id.ToString();
                var value = entry["x"];
                if (value.IsNull)
                {
                    yield return new StoredExchange(id, null, "stream entry without an 'x' field");
                    continue;
                }

                ExchangeRecord? record = null;
                string? error = null;
                try
                {
                    record = RecordingSerializer.DeserializeExchange((byte[])value!);
                }
                catch (RecordingFormatException ex)
                {
                    error = ex.Message;
                }

                yield return new StoredExchange(id, record, error);
            }

            if (entries.Length < Page)
            {
                yield break;
            }

            from = entries[^1].Id;
            exclusive = true;
        }
    }

    /// <inheritdoc/>
    public async Task<bool> DeleteAsync(string name, CancellationToken cancellationToken)
    {
        RecordingNames.Validate(name);
        var sessions = await Db.HashKeysAsync(SessionsKey(name)).WaitAsync(cancellationToken);
        var keys = new List<RedisKey> { StreamKey(name), SessionsKey(name), MetaKey(name) };
        keys.AddRange(sessions.Select(s => SessionIndexKey(name, s.ToString())));
        long deleted = 0;
        foreach (var chunk in keys.Chunk(256))
        {
            deleted += await Db.KeyDeleteAsync(chunk).WaitAsync(cancellationToken);
        }

        var removed = await Db.SetRemoveAsync(IndexKey, name).WaitAsync(cancellationToken);
        return deleted > 0 || removed;
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        if (_ownsConnection)
        {
            await _redis.DisposeAsync();
        }
    }

    private long NowMicros() => _time.GetUtcNow().ToUnixTimeMilliseconds() * 1000;
}

/// <summary>How long recordings are kept in Redis. Every limit is optional; with none, data is kept until deleted.</summary>
public sealed record RedisRetention
{
    /// <summary>Approximate most exchanges kept per recording (<c>XADD MAXLEN ~</c>); older ones are trimmed.</summary>
    public long? MaxLength { get; init; }

    /// <summary>Oldest exchange kept, by age (<c>XADD MINID ~</c>); ignored when <see cref="MaxLength"/> is set.</summary>
    public TimeSpan? MaxAge { get; init; }

    /// <summary>Time to live of a recording's keys, refreshed on every write: an idle recording expires as a whole.</summary>
    public TimeSpan? Ttl { get; init; }
}

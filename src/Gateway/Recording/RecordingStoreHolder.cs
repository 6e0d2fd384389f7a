using Contracts.Recording;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Gateway.Recording;

/// <summary>
/// The recording store chosen by configuration: Redis when <c>Gateway:Recording:Redis</c> is set (the connection is
/// made with <c>abortConnect=false</c>, so the gateway starts while Redis is down and the connection comes back by
/// itself), otherwise the file store in <c>Gateway:Recording:Directory</c>.
/// </summary>
internal sealed class RecordingStoreHolder : IAsyncDisposable
{
    private readonly ConnectionMultiplexer? _redis;

    public RecordingStoreHolder(IOptions<RecordingOptions> options, TimeProvider time, IHostEnvironment environment)
    {
        var o = options.Value;
        if (!string.IsNullOrWhiteSpace(o.Redis))
        {
            // One quick attempt at start-up (the gateway serves meanwhile and the connection keeps retrying by itself), and
            // operations that give up after two seconds, so an admin call never hangs on a Redis that is down.
            var redis = RedisConnection.Parse(o.Redis);
            redis.ConnectTimeout = Math.Min(redis.ConnectTimeout, 1000);
            redis.ConnectRetry = 1;
            redis.AsyncTimeout = Math.Min(redis.AsyncTimeout, 2000);
            redis.SyncTimeout = Math.Min(redis.SyncTimeout, 2000);
            _redis = ConnectionMultiplexer.Connect(redis);
            Store = new RedisRecordingStore(_redis, new RedisRetention { MaxLength = o.Retention.MaxLength, MaxAge = o.Retention.MaxAge, Ttl = o.Retention.Ttl }, time);
        }
        else
        {
            var directory = Path.IsPathRooted(o.Directory) ? o.Directory : Path.Combine(environment.ContentRootPath, o.Directory);
            Store = new FileRecordingStore(directory, time);
        }
    }

    /// <summary>The store.</summary>
    public IRecordingStore Store { get; }

    /// <summary>Redis connection state, or null with the file store.</summary>
    public bool? RedisConnected => _redis?.IsConnected;

    public async ValueTask DisposeAsync()
    {
        await Store.DisposeAsync();
        if (_redis is not null)
        {
            await _redis.DisposeAsync();
        }
    }
}

using System.Collections.Concurrent;
using Contracts.Recording;
using Microsoft.Extensions.Options;

namespace Gateway.Recording;

/// <summary>
/// Which recordings are running in this gateway, started and stopped at run time (admin API, or
/// <c>Gateway:Recording:StartAtBoot</c>), each with its session tracker.
/// </summary>
internal sealed partial class RecordingManager
{
    private readonly RecordingStoreHolder _store;
    private readonly TimeProvider _time;
    private readonly RecordingOptions _options;
    private readonly ILogger<RecordingManager> _logger;
    private readonly ConcurrentDictionary<string, SessionTracker> _trackers = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _written = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private volatile string[] _active = [];

    public RecordingManager(RecordingStoreHolder store, TimeProvider time, IOptions<RecordingOptions> options, ILogger<RecordingManager> logger)
    {
        _store = store;
        _time = time;
        _options = options.Value;
        _logger = logger;
    }

    /// <summary>The recordings running now (a snapshot; empty when none, which makes capture free).</summary>
    public string[] Active => _active;

    /// <summary>The store's kind (<c>redis</c> or <c>file</c>).</summary>
    public string StoreKind => _store.Store.Kind;

    /// <summary>The session tracker of a recording.</summary>
    public SessionTracker Tracker(string name) => _trackers.GetOrAdd(name, static _ => new SessionTracker());

    /// <summary>Starts a recording (idempotent).</summary>
    /// <exception cref="ArgumentException">Invalid name.</exception>
    /// <exception cref="Exception">The store refused (Redis down); the recording is not started.</exception>
    public async Task StartAsync(string name, CancellationToken cancellationToken)
    {
        RecordingNames.Validate(name);
        await _store.Store.StartAsync(name, cancellationToken);
        lock (_lock)
        {
            if (!_active.Contains(name, StringComparer.Ordinal))
            {
                _active = [.. _active, name];
            }
        }

        Tracker(name);
        Log.Started(_logger, name, _store.Store.Kind);
    }

    /// <summary>Stops a recording; false when it was not running here and the store does not know it.</summary>
    public async Task<bool> StopAsync(string name, CancellationToken cancellationToken)
    {
        RecordingNames.Validate(name);
        bool wasActive;
        lock (_lock)
        {
            wasActive = _active.Contains(name, StringComparer.Ordinal);
            _active = [.. _active.Where(n => n != name)];
        }

        if (!wasActive && await _store.Store.GetAsync(name, cancellationToken) is null)
        {
            return false;
        }

        await _store.Store.StopAsync(name, cancellationToken);
        Log.Stopped(_logger, name);
        return true;
    }

    /// <summary>
    /// With the file store (one gateway's own), a recording left in state <c>recording</c> by an earlier run that ended
    /// without stopping it (a crash) is marked stopped. Redis recordings are left alone: another gateway may run them.
    /// </summary>
    public async Task StopStaleAsync(CancellationToken cancellationToken)
    {
        if (_store.Store is not Contracts.Recording.FileRecordingStore file)
        {
            return;
        }

        try
        {
            foreach (var info in await file.ListAsync(cancellationToken))
            {
                if (info.State == RecordingStates.Recording && !IsActive(info.Name))
                {
                    await file.StopAsync(info.Name, cancellationToken);
                }
            }
        }
        catch (IOException)
        {
            // An unreadable directory is reported when recordings are listed; nothing to fix here.
        }
    }

    /// <summary>Stops every recording this gateway runs (at shutdown).</summary>
    public async Task StopAllAsync(CancellationToken cancellationToken)
    {
        foreach (var name in _active)
        {
            try
            {
                await StopAsync(name, cancellationToken);
            }
            catch (Exception ex) when (ex is StackExchange.Redis.RedisException or IOException or TimeoutException or OperationCanceledException)
            {
                // The store is unreachable at shutdown: the state stays 'recording' and is corrected at the next start (file store).
            }
        }
    }

    /// <summary>Whether a recording runs here.</summary>
    public bool IsActive(string name) => _active.Contains(name, StringComparer.Ordinal);

    /// <summary>Counts exchanges written for a recording by this gateway.</summary>
    public void Written(string name, int count) => _written.AddOrUpdate(name, count, (_, v) => v + count);

    /// <summary>Exchanges written for a recording by this gateway since start.</summary>
    public long WrittenBy(string name) => _written.TryGetValue(name, out var v) ? v : 0;

    /// <summary>Forgets idle sessions of every recording.</summary>
    public void EvictIdleSessions()
    {
        var cutoff = (_time.GetUtcNow() - _options.Sessions.IdleTimeout).ToUnixTimeMilliseconds() * 1000;
        foreach (var tracker in _trackers.Values)
        {
            tracker.Evict(cutoff);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "Recording '{Name}' started ({Store} store).")]
        public static partial void Started(ILogger logger, string name, string store);

        [LoggerMessage(EventId = 3002, Level = LogLevel.Information, Message = "Recording '{Name}' stopped.")]
        public static partial void Stopped(ILogger logger, string name);
    }
}

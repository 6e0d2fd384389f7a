using System.Globalization;
using StackExchange.Redis;

namespace Gateway.Shaping.Policies;

/// <summary>
/// The Redis connection of global policies (<c>Gateway:Shaping:Redis</c>). Every call goes through
/// <see cref="RunAsync{TState, T}"/>, which waits at most <c>RedisTimeout</c> (250 ms by default) on the gateway's own
/// clock: StackExchange.Redis checks its own timeouts only on a one-second heartbeat, so a frozen or sleeping Redis
/// used to hold a third of the requests for 1.2 s ("Timeout awaiting response (... 1204ms elapsed, timeout is 250ms)").
/// Past the budget the call reports failure (the policy's <see cref="FailMode"/> applies to that request), Redis is
/// marked down and not asked again until a background probe (<c>PING</c> every <c>RedisProbeInterval</c>, 500 ms by
/// default) answers within the budget. The state is a metric and one log line per change, naming the cause in a few
/// words (never StackExchange.Redis's multi-kilobyte message).
/// </summary>
internal sealed partial class ShapingRedis : IAsyncDisposable
{
    private static readonly string[] s_diagnostics = [", next:", ", inst:", ", mc:"];
    private readonly ConnectionMultiplexer? _connection;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly TimeSpan _timeout;
    private readonly TimeSpan _probeInterval;
    private readonly Lock _gate = new();
    private ITimer? _probe;
    private int _probing;
    private int _down;
    private bool _disposed;
    private readonly System.Collections.Concurrent.ConcurrentQueue<Func<IDatabase, Task>> _pending = new();
    private int _pendingCount;
    private long _compensationsDropped;

    public ShapingRedis(string? configuration, TimeSpan timeout, TimeSpan probeInterval, TimeProvider time, ILogger logger)
    {
        _time = time;
        _logger = logger;
        _timeout = timeout;
        _probeInterval = probeInterval;
        if (!string.IsNullOrWhiteSpace(configuration))
        {
            var options = RedisConnectionOptions(configuration, timeout);
            _connection = ConnectionMultiplexer.Connect(options);
            if (!_connection.IsConnected)
            {
                MarkDown("not connected");
            }
        }
    }

    /// <summary>Whether global policies are falling back now (Redis down, frozen or too slow).</summary>
    public bool FallingBack => Volatile.Read(ref _down) == 1;

    /// <summary>The longest a decision waits for Redis.</summary>
    public TimeSpan Timeout => _timeout;

    /// <summary>
    /// Runs one Redis call within the budget. Returns false (and the policy falls back) when Redis is known to be down,
    /// did not answer within the budget, or failed; a late answer is dropped (its result or error observed).
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled (the client left).</exception>
    /// <param name="state">Passed to <paramref name="call"/> and <paramref name="compensate"/> (no closure).</param>
    /// <param name="call">The Redis call.</param>
    /// <param name="cancellationToken">The request's token.</param>
    /// <param name="compensate">
    /// Undoes the call's effect when its outcome is unknown (no answer within the budget, a failure after it was sent, or
    /// the caller cancelled): the call may still run in Redis after the caller gave up (a frozen Redis runs what it had
    /// read when it resumes), so the compensation is queued and sent on the same connection once Redis answers again, after
    /// the original (commands on one connection run in order). It must be harmless when the call never ran (a <c>ZREM</c>).
    /// </param>
    public async ValueTask<(bool Ok, T? Value)> RunAsync<TState, T>(TState state, Func<IDatabase, TState, Task<T>> call, CancellationToken cancellationToken, Func<IDatabase, TState, Task>? compensate = null)
    {
        if (_connection is null || Volatile.Read(ref _down) == 1)
        {
            return (false, default);
        }

        if (!_connection.IsConnected)
        {
            MarkDown("not connected");
            return (false, default);
        }

        Task<T> task;
        try
        {
            task = call(_connection.GetDatabase(), state);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or ObjectDisposedException)
        {
            MarkDown(Cause(ex));
            return (false, default);
        }

        try
        {
            return (true, await task.WaitAsync(_timeout, _time, cancellationToken));
        }
        catch (TimeoutException) when (!task.IsCompleted)
        {
            Observe(task);
            MarkDown(string.Create(CultureInfo.InvariantCulture, $"no answer within {_timeout.TotalMilliseconds:0} ms"));
            Compensate(state, compensate);
            return (false, default);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or ObjectDisposedException)
        {
            MarkDown(Cause(ex));
            Compensate(state, compensate);
            return (false, default);
        }
        catch (OperationCanceledException)
        {
            Observe(task);
            Compensate(state, compensate);
            throw;
        }
    }

    /// <summary>Compensations waiting for Redis to answer again (see <see cref="RunAsync{TState, T}"/>).</summary>
    public int PendingCompensations => _pending.Count;

    /// <summary>Compensations dropped because <see cref="MaxPendingCompensations"/> were already waiting (their leases expire with their TTL).</summary>
    public long CompensationsDropped => Interlocked.Read(ref _compensationsDropped);

    /// <summary>The most compensations kept while Redis is unavailable; past it they are dropped and counted.</summary>
    public const int MaxPendingCompensations = 4096;

    private void Compensate<TState>(TState state, Func<IDatabase, TState, Task>? compensate)
    {
        if (compensate is null)
        {
            return;
        }

        if (Interlocked.Increment(ref _pendingCount) > MaxPendingCompensations)
        {
            Interlocked.Decrement(ref _pendingCount);
            if (Interlocked.Increment(ref _compensationsDropped) == 1)
            {
                Log.CompensationsDropped(_logger, MaxPendingCompensations);
            }

            return;
        }

        _pending.Enqueue(db => compensate(db, state));
        if (Volatile.Read(ref _down) == 0)
        {
            DrainCompensations(); // Redis answers (the caller cancelled): send it now, after the original
        }
    }

    /// <summary>Sends the queued compensations, fire-and-forget, once Redis answers (a probe's PING or a live connection).</summary>
    private void DrainCompensations()
    {
        if (_connection is not { IsConnected: true })
        {
            return;
        }

        while (_pending.TryDequeue(out var compensation))
        {
            Interlocked.Decrement(ref _pendingCount);
            try
            {
                Observe(compensation(_connection.GetDatabase()));
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException or ObjectDisposedException)
            {
                // lost: what it undoes expires with its TTL
            }
        }
    }

    /// <summary>Sends a command whose answer nobody waits for (<c>CommandFlags.FireAndForget</c>); nothing while Redis is unavailable.</summary>
    public void Send<TState>(TState state, Func<IDatabase, TState, Task> call)
    {
        if (_connection is not { IsConnected: true } || Volatile.Read(ref _down) == 1)
        {
            return;
        }

        try
        {
            Observe(call(_connection.GetDatabase(), state));
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or ObjectDisposedException)
        {
            MarkDown(Cause(ex));
        }
    }

    /// <summary>Marks Redis down (logging the change once) and starts the probe.</summary>
    private void MarkDown(string cause)
    {
        if (Interlocked.Exchange(ref _down, 1) == 1)
        {
            return;
        }

        Log.FallingBack(_logger, cause);
        lock (_gate)
        {
            if (!_disposed && _probe is null)
            {
                _probe = _time.CreateTimer(static s => ((ShapingRedis)s!).Probe(), this, _probeInterval, _probeInterval);
            }
        }
    }

    private void Probe()
    {
        if (Interlocked.Exchange(ref _probing, 1) == 0)
        {
            _ = ProbeAsync(); // never throws; at most one at a time
        }
    }

    private async Task ProbeAsync()
    {
        try
        {
            if (_connection is not { IsConnected: true })
            {
                return;
            }

            var ping = _connection.GetDatabase().PingAsync();
            try
            {
                await ping.WaitAsync(_timeout, _time);
            }
            catch (TimeoutException) when (!ping.IsCompleted)
            {
                Observe(ping);
                return;
            }

            lock (_gate)
            {
                _probe?.Dispose();
                _probe = null;
            }

            if (Interlocked.Exchange(ref _down, 0) == 1)
            {
                Log.Recovered(_logger);
            }

            // The PING answered on the connection the timed-out calls went to, so they have run (or never will):
            // their compensations now run after them.
            DrainCompensations();
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or ObjectDisposedException)
        {
            // still down; the next tick tries again
        }
        finally
        {
            Volatile.Write(ref _probing, 0);
        }
    }

    /// <summary>The cause of a failure in a few words (StackExchange.Redis's messages carry a kilobyte of diagnostics).</summary>
    internal static string Cause(Exception ex)
    {
        var text = ex switch
        {
            RedisTimeoutException => "timeout",
            RedisConnectionException c => $"connection {c.FailureType}",
            _ => ex.Message,
        };
        var line = text.AsSpan();
        if (line.IndexOfAny('\r', '\n') is var nl and >= 0)
        {
            line = line[..nl];
        }

        foreach (var diagnostics in s_diagnostics)
        {
            if (line.IndexOf(diagnostics, StringComparison.Ordinal) is var at and > 0)
            {
                line = line[..at]; // the start of StackExchange.Redis's diagnostics
            }
        }

        return line.Length > 160 ? string.Concat(line[..160], "…") : line.ToString();
    }

    private static void Observe(Task task) =>
        task.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    private static ConfigurationOptions RedisConnectionOptions(string configuration, TimeSpan timeout)
    {
        var options = Contracts.Recording.RedisConnection.Parse(configuration);
        var ms = (int)Math.Ceiling(timeout.TotalMilliseconds);
        options.AsyncTimeout = ms;
        options.SyncTimeout = ms;
        options.ConnectTimeout = Math.Min(options.ConnectTimeout, 1000);
        options.ConnectRetry = 1;
        return options;
    }

    public async ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            _disposed = true;
            _probe?.Dispose();
            _probe = null;
        }

        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 4101, Level = LogLevel.Warning, Message = "Redis for fleet-wide limits is unavailable ({Cause}); global policies follow their FailMode (local share by default) until a probe finds it answering.")]
        public static partial void FallingBack(ILogger logger, string cause);

        [LoggerMessage(EventId = 4102, Level = LogLevel.Information, Message = "Redis for fleet-wide limits is back; global policies are enforced fleet-wide again.")]
        public static partial void Recovered(ILogger logger);

        [LoggerMessage(EventId = 4103, Level = LogLevel.Warning, Message = "More than {Max} compensations of timed-out Redis calls are waiting for Redis; further ones are dropped (counted; their leases expire with LeaseTtl).")]
        public static partial void CompensationsDropped(ILogger logger, int max);
    }
}

using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Replay.Cli;
using Replay.Clients;
using Replay.Measurement;
using Replay.Reporting;
using Replay.Scheduling;
using StackExchange.Redis;

namespace Replay.Workers;

/// <summary>
/// <c>replay worker</c>: one consumer of the <c>replay-workers</c> group. It takes slices of runs from
/// <c>replay:work</c>, sends each slice's sessions at their intended times (measured from the run's epoch), publishes
/// the slice's exact metrics and acknowledges the item.
/// </summary>
/// <remarks>
/// <para>Liveness: every <see cref="WorkQueue.Heartbeat"/> the worker records its heartbeat and re-claims its own
/// pending items (XCLAIM … JUSTID), which resets their idle time; an item idle longer than
/// <see cref="WorkQueue.ClaimIdle"/> therefore belongs to a dead worker, and any worker takes it over with
/// XAUTOCLAIM and finishes the slice.</para>
/// <para>No session is sent twice: just before sending session i the worker sets bit i of the run's sent bitmap
/// (SETBIT returns the old bit); a session whose bit was already set was sent by someone else and is skipped. The
/// price is one Redis round trip before each session, which counts as schedule lag.</para>
/// </remarks>
internal sealed class Worker
{
    private readonly IConnectionMultiplexer _redis;
    private readonly string _name;
    private readonly string? _logRequests;
    private readonly TextWriter _output;
    private readonly TextWriter _error;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, Lazy<Task<RunContext?>>> _runs = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<RedisValue, Task> _inProgress = new();
    private long _slicesDone;
    private int _dispatching;
    private readonly ConcurrentDictionary<RedisValue, long> _startsAt = new();
    private RequestLog? _log;

    /// <summary>Creates a worker.</summary>
    public Worker(IConnectionMultiplexer redis, string name, string? logRequests, TextWriter output, TextWriter error, ILogger logger, TimeProvider time)
    {
        _redis = redis;
        _name = name;
        _logRequests = logRequests;
        _output = output;
        _error = error;
        _logger = logger;
        _time = time;
    }

    /// <summary>Most slices handled at once (dispatching, or waiting for their responses to drain).</summary>
    public int MaxSlices { get; init; } = 4;

    /// <summary>
    /// Most slices waiting for or in their dispatch at once: two, so the next slice is at hand (its dispatcher
    /// asleep until its first arrival) when the current one's schedule ends. With one, a worker polled for its next
    /// slice only after the current one's last send, and the next slice's first arrivals were late by the poll
    /// (28–44 ms p99 lag). A worker also takes a new slice only once every slice it holds has begun, so that slices
    /// spread over the workers instead of the first one to poll taking two ahead.
    /// </summary>
    public int MaxDispatching { get; init; } = 2;

    /// <summary>Slices finished.</summary>
    public long SlicesDone => Interlocked.Read(ref _slicesDone);

    /// <summary>Works until <paramref name="cancellationToken"/> fires; returns the exit code.</summary>
    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var db = _redis.GetDatabase();
        await WorkQueue.EnsureGroupAsync(db).ConfigureAwait(false);
        await BeatAsync(db).ConfigureAwait(false);
        _log = _logRequests is null ? null : new RequestLog(_logRequests);
        await _output.WriteLineAsync($"replay worker {_name}: waiting for work in {WorkQueue.Work} (group {WorkQueue.Group})").ConfigureAwait(false);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var heartbeat = HeartbeatAsync(db, stop.Token);
        var lastClaim = _time.GetTimestamp();
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                var taken = false;
                if (_inProgress.Count < MaxSlices && Volatile.Read(ref _dispatching) < MaxDispatching && !HoldsUnstartedSlice())
                {
                    var entries = await db.StreamReadGroupAsync(WorkQueue.Work, WorkQueue.Group, _name, StreamPosition.NewMessages, count: 1).ConfigureAwait(false);
                    foreach (var entry in entries)
                    {
                        Start(db, entry, takenOver: false, cancellationToken);
                        taken = true;
                    }

                    if (!taken && _time.GetElapsedTime(lastClaim) > WorkQueue.Heartbeat)
                    {
                        lastClaim = _time.GetTimestamp();
                        var claimed = await db.StreamAutoClaimAsync(WorkQueue.Work, WorkQueue.Group, _name, (long)WorkQueue.ClaimIdle.TotalMilliseconds, "0-0", count: 1).ConfigureAwait(false);
                        foreach (var entry in claimed.ClaimedEntries)
                        {
                            if (!entry.IsNull)
                            {
                                Start(db, entry, takenOver: true, cancellationToken);
                                taken = true;
                            }
                        }
                    }
                }

                if (!taken)
                {
                    await RetireIdleRunsAsync().ConfigureAwait(false);
                    await Task.Delay(TimeSpan.FromMilliseconds(50), _time, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopping: unfinished items stay pending and another worker takes them over.
        }
        finally
        {
            await Task.WhenAll(_inProgress.Values).ConfigureAwait(false);
            try
            {
                await db.HashDeleteAsync(WorkQueue.Workers, _name).ConfigureAwait(false);
            }
            catch (RedisException)
            {
                // Its heartbeat ages out by itself.
            }

            await stop.CancelAsync().ConfigureAwait(false);
            await heartbeat.ConfigureAwait(false);
            foreach (var lazy in _runs.Values)
            {
                if (lazy.IsValueCreated && lazy.Value.IsCompletedSuccessfully && lazy.Value.Result is { } context)
                {
                    await context.DisposeAsync().ConfigureAwait(false);
                }
            }

            if (_log is not null)
            {
                await _log.DisposeAsync().ConfigureAwait(false);
            }
        }

        return ExitCodes.Cancelled;
    }

    private bool HoldsUnstartedSlice()
    {
        var now = _time.GetTimestamp();
        foreach (var start in _startsAt.Values)
        {
            if (start > now)
            {
                return true;
            }
        }

        return false;
    }

    private void Start(IDatabase db, StreamEntry entry, bool takenOver, CancellationToken cancellationToken)
    {
        var id = entry.Id;
        _startsAt[id] = long.MaxValue; // not known until the run's spec is read
        var dispatching = 1;
        Interlocked.Increment(ref _dispatching);
        void DispatchDone()
        {
            if (Interlocked.Exchange(ref dispatching, 0) == 1)
            {
                Interlocked.Decrement(ref _dispatching);
            }
        }

        _inProgress[id] = Task.Run(async () =>
        {
            try
            {
                await ProcessAsync(db, entry, takenOver, DispatchDone, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // The item stays pending.
            }
            catch (Exception ex) when (ex is RedisException or InvalidDataException or System.Text.Json.JsonException)
            {
                await _error.WriteLineAsync($"replay worker {_name}: item {id} failed: {ex.Message}").ConfigureAwait(false);
            }
            finally
            {
                DispatchDone();
                _startsAt.TryRemove(id, out _);
                _inProgress.TryRemove(id, out _);
            }
        }, CancellationToken.None);
    }

    private async Task ProcessAsync(IDatabase db, StreamEntry entry, bool takenOver, Action dispatched, CancellationToken cancellationToken)
    {
        var runId = entry["run"].ToString();
        var slice = (int)entry["slice"];
        RunContext? context;
        while (true)
        {
            var lazy = _runs.GetOrAdd(runId, key => new Lazy<Task<RunContext?>>(() => LoadRunAsync(db, key, cancellationToken)));
            context = await lazy.Value.ConfigureAwait(false);
            if (context is null || Interlocked.Increment(ref context.Active) > 0)
            {
                break;
            }

            // Retired a moment ago (its clients closed): open the run again.
            _runs.TryRemove(new KeyValuePair<string, Lazy<Task<RunContext?>>>(runId, lazy));
        }

        if (context is null || slice < 0 || slice >= context.Spec.Slices.Count)
        {
            if (context is not null)
            {
                Interlocked.Decrement(ref context.Active);
            }

            await db.StreamAcknowledgeAsync(WorkQueue.Work, WorkQueue.Group, entry.Id).ConfigureAwait(false);
            return;
        }

        try
        {
            await RunSliceAsync(db, entry, context, runId, slice, takenOver, dispatched, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            Volatile.Write(ref context.LastUsed, _time.GetTimestamp());
            Interlocked.Decrement(ref context.Active);
        }
    }

    private async Task RunSliceAsync(IDatabase db, StreamEntry entry, RunContext context, string runId, int slice, bool takenOver, Action dispatched, CancellationToken cancellationToken)
    {
        var range = context.Spec.Slices[slice];
        _startsAt[entry.Id] = context.EpochTimestamp + (range.Length > 2 ? range[2] * _time.TimestampFrequency / 1000 : 0);
        var metrics = new RunMetrics(_time, context.Run.Slos, keepSeconds: true);
        var sentKey = WorkQueue.Sent(runId);
        using (var runner = new LoadRunner(context.Plan, context.Pipeline.Http, context.Pipeline.WebSockets, metrics, context.Log, context.Pipeline.Budget, _time)
        {
            StartTimestamp = context.EpochTimestamp,
            Range = (range[0], range[1]),
            Gauge = context.Sessions,
            Claim = async index => !await db.StringSetBitAsync(sentKey, index, true).ConfigureAwait(false),
        })
        {
            var running = runner.RunAsync(cancellationToken);
            _ = runner.Dispatched.ContinueWith(static (_, s) => ((Action)s!)(), dispatched, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            await running.ConfigureAwait(false);
            if (runner.Unexpected is { } bug)
            {
                ReplayApp.Log.Unexpected(_logger, bug);
            }

            await db.StreamAddAsync(WorkQueue.Results(runId),
            [
                new NameValueEntry("slice", slice),
                new NameValueEntry("worker", _name),
                new NameValueEntry("sent", runner.SessionsRun),
                new NameValueEntry("skipped", runner.Skipped),
                new NameValueEntry("taken_over", takenOver ? 1 : 0),
                new NameValueEntry("metrics", metrics.Export()),
                new NameValueEntry("diagnostics", System.Text.Json.JsonSerializer.Serialize(
                    WorkerDiagnostics.Of(context.Pipeline, context.Sessions.Peak),
                    WorkerJsonContext.Default.WorkerDiagnostics)),
            ]).ConfigureAwait(false);
        }

        await db.KeyExpireAsync(WorkQueue.Results(runId), WorkQueue.RunLifetime).ConfigureAwait(false);
        await db.StreamAcknowledgeAsync(WorkQueue.Work, WorkQueue.Group, entry.Id).ConfigureAwait(false);
        Interlocked.Increment(ref _slicesDone);
    }

    /// <summary>
    /// Closes the clients of runs this worker has had no slice of for <see cref="RetireAfter"/>: their pooled
    /// connections would otherwise stay open (and count against the target's and this process's descriptors) for the
    /// pool's idle timeout. A slice of a retired run that comes later (taken over) opens the run again.
    /// </summary>
    private async Task RetireIdleRunsAsync()
    {
        foreach (var (id, lazy) in _runs)
        {
            // Active goes very negative, atomically and only from 0, so a slice arriving meanwhile sees it retired.
            if (lazy.IsValueCreated && lazy.Value.IsCompletedSuccessfully && lazy.Value.Result is { } context
                && _time.GetElapsedTime(Volatile.Read(ref context.LastUsed)) > RetireAfter
                && Interlocked.CompareExchange(ref context.Active, int.MinValue / 2, 0) == 0)
            {
                _runs.TryRemove(new KeyValuePair<string, Lazy<Task<RunContext?>>>(id, lazy));
                await context.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>How long a run's clients stay open after its last slice here (default: the claim idle time + 5 s, so a slice taken over soon after still finds them).</summary>
    public TimeSpan RetireAfter { get; init; } = WorkQueue.ClaimIdle + TimeSpan.FromSeconds(5);

    /// <summary>Runs whose clients are open here.</summary>
    public int OpenRuns => _runs.Count;

    private async Task<RunContext?> LoadRunAsync(IDatabase db, string runId, CancellationToken cancellationToken)
    {
        var json = await db.HashGetAsync(WorkQueue.Run(runId), "spec").ConfigureAwait(false);
        if (json.IsNullOrEmpty)
        {
            return null;
        }

        var spec = RunSpec.FromJson(json.ToString());
        var (prepared, code) = await RunCommand.PrepareAsync(spec.Settings, _error, _logger, checkTargets: false, cancellationToken).ConfigureAwait(false);
        if (prepared is null)
        {
            await _error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"replay worker {_name}: run {runId} cannot be prepared here (exit {code}); its items are left to other workers.")).ConfigureAwait(false);
            return null;
        }

        var pipeline = RunPipeline.Create(prepared.Run.Clients, _time);
        var nowMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
        var epoch = _time.GetTimestamp() + ((spec.EpochUnixMs - nowMs) * _time.TimestampFrequency / 1000);
        var context = new RunContext(spec, prepared.Run, prepared.Plan, pipeline, _log, epoch);

        // The warm-up (JIT, connections) runs before the epoch, each worker at its share of the starting rate.
        var warmup = Math.Min(spec.WarmupSeconds, ((spec.EpochUnixMs - nowMs) / 1000.0) - 0.3);
        var share = prepared.Plan.Mode == RunMode.Open ? Math.Max(1, prepared.Plan.Profile!.RateAt(0) / Math.Max(1, spec.Workers)) : (double?)null;
        await pipeline.WarmUpAsync(prepared.Plan, warmup > 0.2 && prepared.Plan.Mode == RunMode.Open ? TimeSpan.FromSeconds(warmup) : TimeSpan.Zero, share, cancellationToken).ConfigureAwait(false);
        return context;
    }

    private async Task HeartbeatAsync(IDatabase db, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await BeatAsync(db).ConfigureAwait(false);
                var mine = _inProgress.Keys.ToArray();
                if (mine.Length > 0)
                {
                    await db.StreamClaimIdsOnlyAsync(WorkQueue.Work, WorkQueue.Group, _name, 0, mine).ConfigureAwait(false);
                }
            }
            catch (RedisException ex)
            {
                await _error.WriteLineAsync($"replay worker {_name}: heartbeat failed: {ex.Message}").ConfigureAwait(false);
            }

            try
            {
                await Task.Delay(WorkQueue.Heartbeat, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
        }
    }

    private Task<bool> BeatAsync(IDatabase db) => db.HashSetAsync(WorkQueue.Workers, _name, _time.GetUtcNow().ToUnixTimeMilliseconds());

    /// <summary>A run as this worker knows it: the plan it built from the spec, and its own clients.</summary>
    private sealed record RunContext(RunSpec Spec, ValidatedRun Run, RunPlan Plan, RunPipeline Pipeline, RequestLog? Log, long EpochTimestamp) : IAsyncDisposable
    {
        /// <summary>Slices of this run being handled now.</summary>
        public int Active;

        /// <summary>Sessions in flight over this run's slices here.</summary>
        public SessionGauge Sessions { get; } = new();


        /// <summary>When the last slice ended (timestamp).</summary>
        public long LastUsed = EpochTimestamp;

        /// <summary>Closes the run's clients (the request log is the worker's and stays open).</summary>
        public ValueTask DisposeAsync()
        {
            Pipeline.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}

using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ModelSim.Faults;

namespace ModelSim.Engine;

/// <summary>
/// The simulated GPU: <c>Sim:Slots</c> sequences generate at once, more wait in a FIFO queue of <c>Sim:Queue</c>,
/// beyond that requests are refused. Costs follow <see cref="LatencyModel"/> exactly.
/// </summary>
/// <remarks>
/// <para><b>Continuous batching, one loop.</b> Like vLLM's iteration-level scheduler (Orca, OSDI '22), one loop drives the
/// whole batch: it wakes on a single <see cref="ITimer"/> at the earliest due event, gives one token to every running
/// sequence that is due, retires finished sequences and admits the head of the FIFO queue into each freed slot, then
/// sleeps until the next due event. There is no timer, task or delay per request or per token, so the cost is one
/// timer wake per millisecond of activity at most, plus a channel write per streamed token.</para>
/// <para><b>Absolute schedule.</b> Each running sequence carries the engine time its next token is due. A token is due
/// <c>step(r)</c> after the previous one (<see cref="LatencyModel.StepMs"/>, r = slots in use), the first one
/// <c>prefill(P) + step(r)</c> after admission. Due times are added, never re-read from the clock, so fractional step
/// times are exact on average and timer lateness never accumulates: a late wake emits every token that is due (catch
/// up) and the schedule stays where it was. A slot freed by a sequence that finished at due time <c>t</c> is handed to
/// the next queued request at <c>t</c>, not at the (later) moment the loop noticed, so the batch never loses capacity
/// to timer granularity and throughput at saturation is <see cref="LatencyModel.CapacityPerSecond"/>.</para>
/// <para>Each sequence keeps its own phase (its steps start when its prefill ends) rather than waiting for a global step
/// boundary: that keeps a request's latency exactly <c>prefill + Σ step</c>, as documented, instead of adding up to
/// one step of alignment delay that no formula would show.</para>
/// <para><b>Threading.</b> All state is guarded by one lock, held only for bookkeeping (no I/O, no user code);
/// consumers are woken through channels and task continuations that run asynchronously. Counters are updated with
/// <see cref="Interlocked"/> so observable instruments can read them without the lock; <see cref="GetStats"/> takes the
/// lock for a consistent snapshot.</para>
/// </remarks>
internal sealed partial class GenerationEngine : IDisposable
{
    /// <summary>Shortest timer delay, ms. Never 0, so a wake is never run inline by <see cref="ITimer.Change"/>.</summary>
    private const double MinWakeDelayMs = 1;

    private readonly Lock _gate = new();
    private readonly SimOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly long _origin;
    private readonly ITimer _timer;
    private readonly FaultState _faults;
    private readonly int _slotCount;

    // The running batch, dense: [0, _runningCount) hold sequences, so a pass costs O(running), not O(Slots).
    private readonly Sequence?[] _running;
    private int _runningCount;

    // Intrusive FIFO of waiting sequences (O(1) removal on cancel, no node allocation).
    private Sequence? _head;
    private Sequence? _tail;
    private int _queued;
    private int _queueDepthMax;

    private double _wakeAtMs = double.PositiveInfinity;
    private bool _inLoop;
    private double _loopWakeMs;
    private bool _stopped;
    private long _nextId;

    // Exact counters (Interlocked; also read lock-free by the Meter callbacks).
    private long _requests;
    private long _rejected;
    private long _completed;
    private long _cancelled;
    private long _failed;
    private long _badRequests;
    private long _promptTokens;
    private long _generatedTokens;
    private long _collapses;
    private long _stalls;

    // The KV cache (null when Sim:PrefixCache:Enabled is false) and vLLM's prefix-cache counters, in tokens.
    private readonly KvCache? _kv;
    private long _prefixQueries;
    private long _prefixHits;

    // Time to first token, engine time from arrival to the first token's due time (vLLM's TTFT histogram).
    private readonly long[] _ttftBuckets = new long[TtftBucketBounds.Length];
    private long _ttftCount;
    private double _ttftSumSeconds;

    /// <summary>Upper bounds (seconds) of <c>vllm:time_to_first_token_seconds</c>'s buckets, as vLLM declares them (vllm/v1/metrics/loggers.py).</summary>
    internal static ReadOnlySpan<double> TtftBucketBounds =>
        [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];

    public GenerationEngine(IOptions<SimOptions> options, TimeProvider timeProvider, ILogger<GenerationEngine> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentNullException.ThrowIfNull(logger);
        _options = options.Value;
        _time = timeProvider;
        _logger = logger;
        _origin = timeProvider.GetTimestamp();
        _faults = new FaultState(_options.CollapseQueue, _options.CollapseMs);
        _slotCount = _options.Slots;
        _running = new Sequence?[_slotCount];
        if (_options.PrefixCache is { Enabled: true } cache)
        {
            _kv = new KvCache(cache.Blocks, cache.BlockTokens);
        }
        InstanceTag = Random.Shared.Next().ToString("x8", System.Globalization.CultureInfo.InvariantCulture);

        // The timer must not capture the execution context of whoever resolved the engine first.
        using (ExecutionContext.SuppressFlow())
        {
            _timer = timeProvider.CreateTimer(static state => ((GenerationEngine)state!).RunLoop(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>The KV cache, null when <c>Sim:PrefixCache:Enabled</c> is false. Guarded by the engine's lock (tests read it when the engine is idle).</summary>
    internal KvCache? Cache => _kv;

    /// <summary>The validated options the engine runs with.</summary>
    public SimOptions Options => _options;

    /// <summary>Eight random hex digits that make response ids unique across simulator instances.</summary>
    public string InstanceTag { get; }

    /// <summary>Milliseconds since the engine started, on its <see cref="TimeProvider"/>.</summary>
    public double NowMs => _time.GetElapsedTime(_origin).TotalMilliseconds;

    /// <summary>Sequences holding a slot now (lock-free read).</summary>
    public int Inflight => Volatile.Read(ref _runningCount);

    /// <summary>Requests waiting now (lock-free read).</summary>
    public int QueueDepth => Volatile.Read(ref _queued);

    /// <summary>Highest queue depth since start (lock-free read).</summary>
    public int QueueDepthMax => Volatile.Read(ref _queueDepthMax);

    /// <summary>True while a collapse is in effect: every request is answered 500.</summary>
    public bool IsCollapsed
    {
        get
        {
            lock (_gate)
            {
                return _faults.IsCollapsed(NowMs);
            }
        }
    }

    internal long RequestsTotal => Interlocked.Read(ref _requests);
    internal long RejectedTotal => Interlocked.Read(ref _rejected);
    internal long CompletedTotal => Interlocked.Read(ref _completed);
    internal long CancelledTotal => Interlocked.Read(ref _cancelled);
    internal long FailedTotal => Interlocked.Read(ref _failed);
    internal long BadRequestsTotal => Interlocked.Read(ref _badRequests);
    internal long PromptTokensTotal => Interlocked.Read(ref _promptTokens);
    internal long GeneratedTokensTotal => Interlocked.Read(ref _generatedTokens);
    internal long CollapsesTotal => Interlocked.Read(ref _collapses);
    internal long StallsTotal => Interlocked.Read(ref _stalls);
    internal long PrefixCacheQueriesTotal => Interlocked.Read(ref _prefixQueries);
    internal long PrefixCacheHitsTotal => Interlocked.Read(ref _prefixHits);

    /// <summary>Fraction of KV blocks held by running sequences, 0 to 1 (vLLM's <c>kv_cache_usage_perc</c>); 0 with the cache off. Lock-free, approximate.</summary>
    internal double KvCacheUsage => _kv is null ? 0 : (double)_kv.UsedBlocks / _kv.Capacity;

    /// <summary>
    /// Offers a request to the GPU: it takes a free slot (prefill starts now), or waits at the tail of the FIFO queue,
    /// or is refused. Never blocks and never throws for an expected refusal.
    /// </summary>
    /// <param name="request">Sizes and text key; <see cref="GenerationRequest.MaxTokens"/> must be ≥ 1.</param>
    /// <param name="streaming">True to receive token indices through <see cref="Sequence.Tokens"/> as they are produced.</param>
    /// <param name="sequence">The admitted sequence when the result is <see cref="AdmissionResult.Accepted"/>, else null.
    /// The caller must <see cref="Sequence.Cancel"/> it if its client goes away.</param>
    public AdmissionResult TryAdmit(in GenerationRequest request, bool streaming, out Sequence? sequence)
    {
        Debug.Assert(request.MaxTokens >= 1, "A sequence generates at least one token.");
        Debug.Assert(request.PromptTokens >= 0, "Prompt length is not negative.");
        sequence = null;
        var collapsed = false;
        AdmissionResult result;
        lock (_gate)
        {
            Interlocked.Increment(ref _requests);
            var now = NowMs;
            if (_stopped)
            {
                Interlocked.Increment(ref _failed);
                return AdmissionResult.ShuttingDown;
            }

            if (_faults.IsCollapsed(now))
            {
                Interlocked.Increment(ref _failed);
                return AdmissionResult.Collapsed;
            }

            // FIFO: a free slot is taken only when nobody waits (the head may be waiting for KV blocks, not a slot).
            if (_runningCount < _slotCount && _head is null)
            {
                sequence = new Sequence(this, ++_nextId, request, streaming, now);
                if (TryStartLocked(sequence, now, fromQueue: false))
                {
                    return AdmissionResult.Accepted;
                }
            }

            if (_faults.WouldCollapse(_queued + 1))
            {
                sequence = null;
                CollapseLocked(now);
                Interlocked.Increment(ref _failed);
                collapsed = true;
                result = AdmissionResult.Collapsed;
            }
            else if (_queued >= _options.Queue)
            {
                sequence = null;
                Interlocked.Increment(ref _rejected);
                result = AdmissionResult.QueueFull;
            }
            else
            {
                sequence ??= new Sequence(this, ++_nextId, request, streaming, now);
                EnqueueLocked(sequence);
                result = AdmissionResult.Accepted;
            }
        }

        if (collapsed)
        {
            Log.Collapsed(_logger, _options.CollapseQueue, _options.CollapseMs);
        }

        return result;
    }

    /// <summary>Frees <paramref name="sequence"/>'s slot or queue place at once and counts it cancelled; no-op when it already ended.</summary>
    public void Cancel(Sequence sequence)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        lock (_gate)
        {
            switch (sequence.State)
            {
                case SequenceState.Queued:
                    var wasHead = sequence == _head;
                    RemoveFromQueueLocked(sequence);
                    Interlocked.Increment(ref _cancelled);
                    sequence.Finish(SequenceOutcome.Cancelled, NowMs);
                    if (wasHead)
                    {
                        // The head may have waited for KV blocks that the next one fits in.
                        AdmitFromQueueLocked(NowMs);
                    }

                    break;
                case SequenceState.Running:
                    var now = NowMs;
                    ReleaseSlotLocked(sequence);
                    Interlocked.Increment(ref _cancelled);
                    sequence.Finish(SequenceOutcome.Cancelled, now);
                    AdmitFromQueueLocked(now);
                    break;
                default:
                    return;
            }
        }
    }

    /// <summary>
    /// Freezes all generation for <paramref name="duration"/>, as a GC pause or a stuck GPU would: running sequences
    /// resume where they were, their remaining schedule pushed back; queued ones keep waiting. Overlapping stalls merge.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="duration"/> is not positive.</exception>
    public void Stall(TimeSpan duration)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(duration, TimeSpan.Zero);
        lock (_gate)
        {
            var now = NowMs;
            var shift = _faults.BeginStall(now, duration.TotalMilliseconds);
            for (var i = 0; i < _runningCount; i++)
            {
                _running[i]!.NextDueMs += shift;
            }

            Interlocked.Increment(ref _stalls);
            RequestWakeLocked(_faults.StallUntilMs);
        }

        Log.Stalled(_logger, duration.TotalMilliseconds);
    }

    /// <summary>
    /// Collapses the server now, as if it had been OOM-killed: every running and queued request fails (HTTP 500) and for
    /// <paramref name="duration"/> every new request is answered 500. The automatic trigger is <c>Sim:CollapseQueue</c>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="duration"/> is not positive.</exception>
    public void Collapse(TimeSpan duration)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(duration, TimeSpan.Zero);
        lock (_gate)
        {
            CollapseLocked(NowMs, duration.TotalMilliseconds);
        }

        Log.Collapsed(_logger, _options.CollapseQueue, duration.TotalMilliseconds);
    }

    /// <summary>Counts a request answered 400 before it reached the engine.</summary>
    public void CountBadRequest() => Interlocked.Increment(ref _badRequests);

    /// <summary>A consistent snapshot of the counters, taken under the lock.</summary>
    public SimStats GetStats()
    {
        lock (_gate)
        {
            return new SimStats
            {
                Requests = _requests,
                Rejected = _rejected,
                Completed = _completed,
                Cancelled = _cancelled,
                Failed = _failed,
                BadRequests = Interlocked.Read(ref _badRequests),
                Inflight = _runningCount,
                QueueDepth = _queued,
                QueueDepthMax = _queueDepthMax,
                Slots = _slotCount,
                PromptTokens = _promptTokens,
                GeneratedTokens = _generatedTokens,
                Collapses = _collapses,
                Stalls = _stalls,
                KvBlocks = _kv?.Capacity ?? 0,
                KvBlocksUsed = _kv?.UsedBlocks ?? 0,
                KvBlocksCached = _kv?.CachedBlocks ?? 0,
                PrefixCacheQueries = _prefixQueries,
                PrefixCacheHits = _prefixHits,
            };
        }
    }

    /// <summary>A consistent copy of the time-to-first-token histogram: per-bucket (not cumulative) counts for
    /// <see cref="TtftBucketBounds"/> plus one for +Inf, the count and the sum in seconds.</summary>
    internal (long[] Buckets, long Count, double SumSeconds) GetTtftHistogram()
    {
        lock (_gate)
        {
            var buckets = new long[_ttftBuckets.Length + 1];
            var inBounds = 0L;
            for (var i = 0; i < _ttftBuckets.Length; i++)
            {
                buckets[i] = _ttftBuckets[i];
                inBounds += _ttftBuckets[i];
            }

            buckets[^1] = _ttftCount - inBounds;
            return (buckets, _ttftCount, _ttftSumSeconds);
        }
    }

    /// <summary>Stops the engine: every running and queued sequence ends as <see cref="SequenceOutcome.Shutdown"/>, new requests are refused.</summary>
    public void Shutdown()
    {
        lock (_gate)
        {
            if (_stopped)
            {
                return;
            }

            _stopped = true;
            FailAllLocked(SequenceOutcome.Shutdown, NowMs);
            _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    public void Dispose()
    {
        Shutdown();
        _timer.Dispose();
    }

    /// <summary>The loop: one pass per timer wake. See the type's remarks.</summary>
    private void RunLoop()
    {
        lock (_gate)
        {
            _wakeAtMs = double.PositiveInfinity;
            if (_stopped)
            {
                return;
            }

            var now = NowMs;
            if (_faults.IsStalled(now))
            {
                RequestWakeLocked(_faults.StallUntilMs);
                return;
            }

            _inLoop = true;
            _loopWakeMs = double.PositiveInfinity;
            try
            {
                for (var i = 0; i < _runningCount; i++)
                {
                    // Retiring a sequence moves the last running one into position i and admissions append at the
                    // end, so position i is re-read until it holds a sequence that is not due.
                    while (i < _runningCount && _running[i] is { } sequence && sequence.NextDueMs <= now)
                    {
                        sequence.EmitToken();
                        Interlocked.Increment(ref _generatedTokens);
                        if (sequence.Generated == 1)
                        {
                            RecordTtftLocked((sequence.NextDueMs - sequence.EnqueuedAtMs) / 1000);
                        }

                        if (sequence.Generated < sequence.MaxTokens)
                        {
                            sequence.NextDueMs += LatencyModel.StepMs(_options, _runningCount);
                            continue;
                        }

                        var finishedAt = sequence.NextDueMs;
                        ReleaseSlotLocked(sequence);
                        Interlocked.Increment(ref _completed);
                        sequence.Finish(SequenceOutcome.Completed, finishedAt);
                        AdmitFromQueueLocked(finishedAt);
                    }

                    if (i < _runningCount && _running[i]!.NextDueMs < _loopWakeMs)
                    {
                        _loopWakeMs = _running[i]!.NextDueMs;
                    }
                }
            }
            finally
            {
                _inLoop = false;
            }

            if (double.IsFinite(_loopWakeMs))
            {
                RequestWakeLocked(_loopWakeMs);
            }
        }
    }

    /// <summary>
    /// Puts <paramref name="sequence"/> in a free slot if the KV cache has its blocks (always, with the cache off); its
    /// prefill starts at <paramref name="startMs"/> (after any stall) and covers only its uncached prompt tokens.
    /// </summary>
    /// <param name="sequence">A new sequence, or the queue's head.</param>
    /// <param name="startMs">Engine time its prefill may start.</param>
    /// <param name="fromQueue">True when it is the queue's head (it is taken out of the queue when it starts).</param>
    /// <returns>False when the KV cache cannot hold it now; nothing changed.</returns>
    private bool TryStartLocked(Sequence sequence, double startMs, bool fromQueue)
    {
        Debug.Assert(_runningCount < _slotCount, "A slot is free.");
        startMs = Math.Max(startMs, _faults.StallUntilMs);
        if (_kv is null)
        {
            sequence.PrefillEndMs = startMs + LatencyModel.PrefillMs(_options, sequence.PromptTokens);
        }
        else if (_kv.TryAllocate(sequence, startMs, _options))
        {
            // vLLM v1 counts every prompt token a scheduled request looks up, and the cached ones (in tokens).
            Interlocked.Add(ref _prefixQueries, sequence.PromptTokens);
            Interlocked.Add(ref _prefixHits, sequence.CachedTokens);
        }
        else
        {
            return false;
        }

        if (fromQueue)
        {
            RemoveFromQueueLocked(sequence);
        }

        _running[_runningCount] = sequence;
        sequence.Slot = _runningCount;
        Volatile.Write(ref _runningCount, _runningCount + 1);
        sequence.State = SequenceState.Running;
        sequence.AdmittedAtMs = startMs;
        Interlocked.Add(ref _promptTokens, sequence.PromptTokens);
        sequence.NextDueMs = sequence.PrefillEndMs + LatencyModel.StepMs(_options, _runningCount);
        RequestWakeLocked(sequence.NextDueMs);
        return true;
    }

    private void RecordTtftLocked(double seconds)
    {
        var bounds = TtftBucketBounds;
        for (var i = 0; i < bounds.Length; i++)
        {
            if (seconds <= bounds[i])
            {
                _ttftBuckets[i]++;
                break;
            }
        }

        _ttftCount++;
        _ttftSumSeconds += seconds;
    }

    private void ReleaseSlotLocked(Sequence sequence)
    {
        Debug.Assert(sequence.State == SequenceState.Running && _running[sequence.Slot] == sequence, "The sequence holds its slot.");
        var last = _runningCount - 1;
        if (sequence.Slot != last)
        {
            var moved = _running[last]!;
            _running[sequence.Slot] = moved;
            moved.Slot = sequence.Slot;
        }

        _running[last] = null;
        Volatile.Write(ref _runningCount, last);
        sequence.Slot = -1;
        _kv?.Release(sequence);
    }

    /// <summary>
    /// Moves queue heads into free slots while the KV cache holds them; each starts at the later of
    /// <paramref name="startMs"/> and its arrival. Strict FIFO, like vLLM's scheduler: a head that does not fit waits,
    /// and so does everyone behind it.
    /// </summary>
    private void AdmitFromQueueLocked(double startMs)
    {
        while (_runningCount < _slotCount && _head is { } next
            && TryStartLocked(next, Math.Max(startMs, next.EnqueuedAtMs), fromQueue: true))
        {
        }
    }

    private void EnqueueLocked(Sequence sequence)
    {
        sequence.State = SequenceState.Queued;
        sequence.QueuePrev = _tail;
        sequence.QueueNext = null;
        if (_tail is null)
        {
            _head = sequence;
        }
        else
        {
            _tail.QueueNext = sequence;
        }

        _tail = sequence;
        _queued++;
        if (_queued > _queueDepthMax)
        {
            _queueDepthMax = _queued;
        }
    }

    private void RemoveFromQueueLocked(Sequence sequence)
    {
        if (sequence.QueuePrev is null)
        {
            _head = sequence.QueueNext;
        }
        else
        {
            sequence.QueuePrev.QueueNext = sequence.QueueNext;
        }

        if (sequence.QueueNext is null)
        {
            _tail = sequence.QueuePrev;
        }
        else
        {
            sequence.QueueNext.QueuePrev = sequence.QueuePrev;
        }

        sequence.QueuePrev = null;
        sequence.QueueNext = null;
        _queued--;
    }

    private void CollapseLocked(double now, double? durationMs = null)
    {
        FailAllLocked(SequenceOutcome.Failed, now);
        _kv?.ClearIdle(); // the server restarts empty
        _faults.BeginCollapse(now, durationMs);
        Interlocked.Increment(ref _collapses);
    }

    private void FailAllLocked(SequenceOutcome outcome, double now)
    {
        while (_runningCount > 0)
        {
            var running = _running[_runningCount - 1]!;
            ReleaseSlotLocked(running);
            Interlocked.Increment(ref _failed);
            running.Finish(outcome, now);
        }

        while (_head is { } queued)
        {
            RemoveFromQueueLocked(queued);
            Interlocked.Increment(ref _failed);
            queued.Finish(outcome, now);
        }
    }

    /// <summary>Makes sure the loop runs at or after <paramref name="dueMs"/>; inside the loop the request is folded into its next wake.</summary>
    private void RequestWakeLocked(double dueMs)
    {
        if (_inLoop)
        {
            _loopWakeMs = Math.Min(_loopWakeMs, dueMs);
            return;
        }

        if (_stopped || dueMs >= _wakeAtMs)
        {
            return;
        }

        _wakeAtMs = dueMs;
        // Whole milliseconds, rounded up: System.Threading.Timer truncates to ms, and firing early would only re-arm.
        var delayMs = Math.Max(MinWakeDelayMs, Math.Ceiling(dueMs - NowMs));
        _timer.Change(TimeSpan.FromMilliseconds(delayMs), Timeout.InfiniteTimeSpan);
    }
}

using System.Collections.Concurrent;
using System.Net.WebSockets;
using Replay.Clients;
using Replay.Measurement;
using Replay.Sources;

namespace Replay.Scheduling;

/// <summary>
/// Sends a <see cref="RunPlan"/>: a dispatcher thread releases each session at its intended time, computed in
/// absolute terms from the start (offset or Λ⁻¹ of the arrival count), never from the previous send, so the schedule
/// does not drift; sessions then run as async tasks (10,000 at once cost memory, not threads).
/// </summary>
/// <remarks>
/// <para>The dispatcher sleeps until the next intended time with an absolute <c>clock_nanosleep</c> on Linux
/// (<see cref="PreciseSleep"/>: tens of microseconds late at most, where a timer-based wait wakes a millisecond or
/// more late), elsewhere until about a millisecond before it and then yields. It starts each due session itself: the
/// synchronous part of the send (building the request, writing it to the socket) runs on the dispatcher, with no
/// thread-pool hop, and responses are read on pool threads. Schedule lag is measured as the session starts, so any
/// delay in this process (a GC pause, a busy core) counts against us.</para>
/// <para>A session's later requests are intended at the previous response's end plus the recorded think time; their
/// latency is measured from that intended time too. They wait on a <see cref="FineTimer"/>, so none is sent before its
/// intended time (a plain <c>Task.Delay</c> can end milliseconds early) and latency is never below service time.</para>
/// </remarks>
internal sealed class LoadRunner : IDisposable
{
    private readonly RunPlan _plan;
    private readonly HttpSender _http;
    private readonly WebSocketSender _webSockets;
    private readonly RunMetrics _metrics;
    private readonly RequestLog? _log;
    private readonly TimeProvider _time;
    private readonly ConnectionBudget _budget;
    private readonly TimeSpan _timeout;
    private readonly bool _http2;
    private readonly SemaphoreSlim _slots;
    private readonly FineTimer _timer;
    private readonly ConcurrentQueue<TokenTimes> _tokenTimes = new();
    private readonly TaskCompletionSource _allDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _dispatched = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationToken _runToken;
    private long _startTimestamp;
    private int _inflight;
    private int _peakInflight;
    private volatile bool _dispatchDone;
    private long _nextClosed = -1;
    private long _requestsStarted;
    private bool _precise;
    private int _burst;
    private Exception? _unexpected;
    private long _skipped;
    private long _sessionsRun;
    private long _conversations;

    /// <summary>Creates a runner.</summary>
    /// <param name="plan">What to send.</param>
    /// <param name="http">The HTTP and gRPC sender.</param>
    /// <param name="webSockets">The WebSocket sender.</param>
    /// <param name="metrics">Where measurements go.</param>
    /// <param name="log">The request log, or null.</param>
    /// <param name="budget">The run's socket budget (shared by the warm-up and the run).</param>
    /// <param name="time">The clock.</param>
    public LoadRunner(RunPlan plan, HttpSender http, WebSocketSender webSockets, RunMetrics metrics, RequestLog? log, ConnectionBudget budget, TimeProvider time)
    {
        _plan = plan;
        _http = http;
        _webSockets = webSockets;
        _metrics = metrics;
        _log = log;
        _budget = budget;
        _timeout = http.Settings.Timeout;
        _http2 = http.Settings.Http2;
        _time = time;
        _slots = new SemaphoreSlim(plan.MaxInflight, plan.MaxInflight);
        _timer = new FineTimer(time);
    }

    /// <summary>
    /// Workers: the schedule's time zero as a timestamp of this process (the run's epoch), instead of the moment
    /// <see cref="RunAsync"/> is called, so that every worker measures against the same schedule.
    /// </summary>
    public long? StartTimestamp { get; init; }

    /// <summary>
    /// Workers: only the sessions whose index (arrival number in the open model, position in the plan in a timed
    /// replay) is in [First, End) are sent; the others are skipped without waiting for their time.
    /// </summary>
    public (long First, long End)? Range { get; init; }

    /// <summary>
    /// Workers: called with a session's index just before it is sent; false means another worker sent it already
    /// (the session is skipped, unmeasured). Its round trip counts as schedule lag.
    /// </summary>
    public Func<long, ValueTask<bool>>? Claim { get; init; }

    /// <summary>Workers: a gauge shared by the runners of one process, so its peak counts sessions of concurrent slices together.</summary>
    public SessionGauge? Gauge { get; init; }

    /// <summary>Completes when the dispatcher has released its last session (responses may still be coming).</summary>
    public Task Dispatched => _dispatched.Task;

    /// <summary>Writes the user turns of conversations (<c>--generate-with</c>, or synthetic with <c>--turns</c>); without it a conversation sends its opening turn only (the warm-up).</summary>
    public IUserTurns? Conversations { get; set; }

    /// <summary>Conversations started (their index runs from 0).</summary>
    public long ConversationsStarted => Interlocked.Read(ref _conversations);

    /// <summary>Sessions this runner released and sent (after <see cref="Claim"/>, when there is one).</summary>
    public long SessionsRun => Interlocked.Read(ref _sessionsRun);

    /// <summary>Sessions skipped because <see cref="Claim"/> said another worker had sent them.</summary>
    public long Skipped => Interlocked.Read(ref _skipped);

    /// <summary>The first exception a session ended with that was not an expected failure (a bug), or null.</summary>
    public Exception? Unexpected => Volatile.Read(ref _unexpected);

    /// <summary>Sessions running now.</summary>
    public int Inflight => Volatile.Read(ref _inflight);

    /// <summary>Most sessions that ran at once.</summary>
    public int PeakInflight => Volatile.Read(ref _peakInflight);

    /// <summary>Runs the plan to the end (every session done) or until <paramref name="cancellationToken"/> fires.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        _runToken = cancellationToken;
        _startTimestamp = StartTimestamp ?? _time.GetTimestamp();
        _metrics.Start(_startTimestamp);
        if (_plan.Mode == RunMode.Closed)
        {
            await RunClosedAsync(cancellationToken).ConfigureAwait(false);
            return;
        }

        var thread = new Thread(Dispatch) { IsBackground = true, Name = "replay-dispatcher", Priority = ThreadPriority.AboveNormal };
        thread.Start();
        await _allDone.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _slots.Dispose();
        _timer.Dispose();
    }

    private void TrackPeak(int inflight)
    {
        var peak = Volatile.Read(ref _peakInflight);
        while (inflight > peak)
        {
            var seen = Interlocked.CompareExchange(ref _peakInflight, inflight, peak);
            if (seen == peak)
            {
                return;
            }

            peak = seen;
        }
    }

    private long Ticks(double milliseconds) => (long)(milliseconds * _time.TimestampFrequency / 1000.0);

    /// <summary>The dispatcher loop (its own thread).</summary>
    private void Dispatch()
    {
        _precise = ReferenceEquals(_time, TimeProvider.System) && PreciseSleep.Supported;
        try
        {
            var (first, end) = Range ?? (0, long.MaxValue);
            if (_plan.Mode == RunMode.Faithful)
            {
                var sessions = _plan.Sessions;
                for (var i = (int)Math.Min(first, sessions.Count); i < sessions.Count && i < end; i++)
                {
                    if (!Release(sessions[i], i, _startTimestamp + Ticks(sessions[i].StartOffsetMs)))
                    {
                        break;
                    }
                }
            }
            else
            {
                // Every arrival's time is computed, also those of other workers' ranges: the draws are sequential.
                var schedule = new ArrivalSchedule(_plan.Profile!, new ArrivalProcess(_plan.Arrivals, _plan.Burstiness, _plan.Seed), _plan.Limit);
                // --limit counts requests: an arrival that starts a session (--session-arrivals) counts its requests, and
                // the arrival whose session would cross the limit is not sent. Counted over every arrival, those of
                // other workers' ranges too, so each worker cuts at the same arrival.
                var pool = _plan.Sessions;
                long i = 0, requests = 0;
                while (i < end && schedule.TryNext(out var offset))
                {
                    var index = i++;
                    var session = pool[(int)(index % pool.Count)];
                    requests += session.RequestCount;
                    if (requests > _plan.Limit)
                    {
                        break;
                    }

                    if (index >= first && !Release(session, index, _startTimestamp + Ticks(offset * 1000)))
                    {
                        break;
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Aborted: RunAsync returns through its token.
        }
        finally
        {
            _dispatchDone = true;
            _dispatched.TrySetResult();
            if (Volatile.Read(ref _inflight) == 0)
            {
                _allDone.TrySetResult();
            }
        }
    }

    /// <summary>Waits for <paramref name="due"/> and for a free slot, then queues the session; false when the run was aborted.</summary>
    private bool Release(PlannedSession session, long index, long due)
    {
        WaitUntil(due);
        if (_runToken.IsCancellationRequested)
        {
            return false;
        }

        _slots.Wait(_runToken);
        TrackPeak(Interlocked.Increment(ref _inflight));
        Gauge?.Increment();
        // The sync part of the send (building the request, writing it to the socket) runs here, so the request
        // leaves when the dispatcher wakes, with no thread-pool hop; responses are read on pool threads.
        _ = RunDispatchedAsync(session, index, due);
        return true;
    }

    /// <summary>
    /// Waits for <paramref name="due"/>: with <see cref="PreciseSleep"/> an absolute real-time sleep; otherwise sleeps
    /// until about 1 ms before it, then yields/spins. After 256 arrivals in a row that were already due (a backlog), a
    /// real-time dispatcher sleeps 50 µs so that ordinary threads keep running.
    /// </summary>
    private void WaitUntil(long due)
    {
        if (_precise)
        {
            if (due > _time.GetTimestamp())
            {
                _burst = 0;

                // Long waits in slices of 100 ms, so an aborted run does not leave the thread asleep for long.
                var slice = Ticks(100);
                while (due - _time.GetTimestamp() > slice && !_runToken.IsCancellationRequested)
                {
                    PreciseSleep.SleepUntil(_time.GetTimestamp() + slice);
                }

                PreciseSleep.SleepUntil(due);
            }
            else if (++_burst >= 256)
            {
                _burst = 0;
                PreciseSleep.SleepUntil(_time.GetTimestamp() + Ticks(0.05));
            }

            return;
        }

        var sleepThreshold = Ticks(1.5);
        var spinThreshold = Ticks(0.05);
        while (!_runToken.IsCancellationRequested)
        {
            var remaining = due - _time.GetTimestamp();
            if (remaining <= 0)
            {
                return;
            }

            if (remaining > sleepThreshold)
            {
                Thread.Sleep(Math.Max(1, (int)((remaining - Ticks(1)) * 1000 / _time.TimestampFrequency)));
            }
            else if (remaining > spinThreshold)
            {
                Thread.Yield();
            }
            else
            {
                Thread.SpinWait(16);
            }
        }
    }

    private async Task RunDispatchedAsync(PlannedSession session, long index, long intended)
    {
        try
        {
            if (Claim is { } claim && !await claim(index).ConfigureAwait(false))
            {
                Interlocked.Increment(ref _skipped);
                return;
            }

            Interlocked.Increment(ref _sessionsRun);
            await RunSessionAsync(session, intended).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // A bug, not a failure of the target: kept so that the run ends with exit code 4 and its stack trace
            // instead of vanishing with an unobserved task.
            Interlocked.CompareExchange(ref _unexpected, ex, null);
        }
        finally
        {
            _slots.Release();
            Gauge?.Decrement();
            if (Interlocked.Decrement(ref _inflight) == 0 && _dispatchDone)
            {
                _allDone.TrySetResult();
            }
        }
    }

    private async Task RunClosedAsync(CancellationToken cancellationToken)
    {
        var end = _plan.Duration is { } d ? _startTimestamp + Ticks(d.TotalMilliseconds) : long.MaxValue;
        var users = new Task[_plan.Users];
        for (var u = 0; u < users.Length; u++)
        {
            users[u] = UserAsync(end);
        }

        await Task.WhenAll(users).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task UserAsync(long end)
    {
        await Task.Yield();
        var pool = _plan.Sessions;
        while (!_runToken.IsCancellationRequested && _time.GetTimestamp() < end)
        {
            var index = Interlocked.Increment(ref _nextClosed);
            var session = pool[(int)(index % pool.Count)];
            // --limit counts requests: a session that would cross it is not started.
            if (Interlocked.Add(ref _requestsStarted, session.RequestCount) > _plan.Limit)
            {
                return;
            }

            TrackPeak(Interlocked.Increment(ref _inflight));
            try
            {
                await RunSessionAsync(session, _time.GetTimestamp()).ConfigureAwait(false);
            }
            finally
            {
                Interlocked.Decrement(ref _inflight);
            }

            if (_plan.ThinkMs > 0)
            {
                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(_plan.ThinkMs), _time, _runToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>Sends a session's requests in order, each after the previous one's end plus its think time.</summary>
    private async Task RunSessionAsync(PlannedSession session, long intendedStart)
    {
        if (!_tokenTimes.TryDequeue(out var tokens))
        {
            tokens = new TokenTimes();
        }

        try
        {
            if (session.Conversation is { } conversation && Conversations is { } generator)
            {
                await RunConversationAsync(session, conversation, generator, Interlocked.Increment(ref _conversations) - 1, intendedStart, tokens).ConfigureAwait(false);
                return;
            }

            var intended = intendedStart;
            long lastEnd = 0;
            for (var i = 0; i < session.Requests.Count; i++)
            {
                var request = session.Requests[i];
                if (i > 0)
                {
                    intended = lastEnd + Ticks(request.ThinkBeforeMs);
                    await DelayUntilAsync(intended).ConfigureAwait(false);
                }

                lastEnd = request.Protocol == RequestProtocol.WebSocket
                    ? await RunWebSocketAsync(session, i, request, intended, tokens).ConfigureAwait(false)
                    : (await RunOneAsync(session, i, request, intended, tokens).ConfigureAwait(false)).EndTimestamp;
                if (_runToken.IsCancellationRequested)
                {
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (_runToken.IsCancellationRequested)
        {
            // Aborted.
        }
        finally
        {
            tokens.Clear();
            _tokenTimes.Enqueue(tokens);
        }
    }

    /// <summary>
    /// A generated conversation: the opener, then after each answer (and the think time) the user's next turn written
    /// by <paramref name="generator"/> from the conversation so far; each request carries the whole conversation. The
    /// time the generator takes is the user's (reading and typing): a turn is intended at the later of the previous
    /// answer's end plus the think time and the moment its text was ready. A failed answer or generation ends the
    /// conversation.
    /// </summary>
    private async Task RunConversationAsync(PlannedSession session, ConversationPlan plan, IUserTurns generator, long index, long intendedStart, TokenTimes tokens)
    {
        var history = new List<(string Role, string Text)>(plan.Turns * 2);
        var intended = intendedStart;
        var lastEnd = 0L;
        var id = string.Create(System.Globalization.CultureInfo.InvariantCulture, $"conversation-{index}");
        for (var t = 0; t < plan.Turns; t++)
        {
            string? text;
            if (t == 0)
            {
                text = generator.Opener(index);
            }
            else
            {
                intended = lastEnd + Ticks(plan.ThinkMs);
                text = await generator.NextTurnAsync(index, t, history, _runToken).ConfigureAwait(false);
                var ready = _time.GetTimestamp();
                intended = Math.Max(intended, ready);
                await DelayUntilAsync(intended).ConfigureAwait(false);
            }

            if (_runToken.IsCancellationRequested)
            {
                return;
            }

            if (text is null)
            {
                // The generator could not write this turn: it and the conversation's later turns are never sent, and
                // each fails visibly (counted in failures, the reason in the report) instead of the run looking clean.
                await GeneratorFailedAsync(session with { Id = id }, t, plan.Turns, intended, generator.FirstFailure, tokens).ConfigureAwait(false);
                return;
            }

            history.Add(("user", text));
            var request = new PlannedRequest
            {
                Protocol = RequestProtocol.Http,
                PathAndQuery = plan.Path,
                Headers = [new("content-type", "application/json"), new("x-session-id", id)],
                Body = ConversationGenerator.TargetBody(plan.Model, history, plan.MaxTokens, plan.Stream),
                Streamed = plan.Stream,
                Route = "conversation",
                CaptureText = true,
            };
            var outcome = await RunOneAsync(session with { Id = id }, t, request, intended, tokens).ConfigureAwait(false);
            lastEnd = outcome.EndTimestamp;
            if (outcome.Failure != FailureKind.None || outcome.Text is null)
            {
                return;
            }

            history.Add(("assistant", outcome.Text));
        }
    }

    /// <summary>Turns <paramref name="from"/> … <paramref name="turns"/> − 1 of a conversation whose generator failed: each a failed request, never sent.</summary>
    private async ValueTask GeneratorFailedAsync(PlannedSession session, int from, int turns, long intended, string? reason, TokenTimes tokens)
    {
        tokens.Clear();
        for (var t = from; t < turns; t++)
        {
            var now = _time.GetTimestamp();
            var outcome = new Outcome
            {
                GrpcStatus = -1,
                Failure = FailureKind.Generator,
                StatusKey = StatusKeys.GeneratorError,
                Error = reason ?? "the conversation generator failed",
                EndTimestamp = now,
            };
            _metrics.RecordStart(Math.Min(intended, now), now);
            await CompleteAsync(session, t, 0, "conversation", outcome, Math.Min(intended, now), now, tokens).ConfigureAwait(false);
        }
    }

    /// <summary>Waits until <paramref name="due"/>: never returns before it (<see cref="FineTimer"/>), so no request leaves before its intended time.</summary>
    private ValueTask DelayUntilAsync(long due) => _timer.WaitUntilAsync(due, _runToken);

    private async ValueTask<Outcome> RunOneAsync(PlannedSession session, int sequence, PlannedRequest request, long intended, TokenTimes tokens)
    {
        // An HTTP/1.1 exchange holds a connection (a descriptor) until it ends: take a unit of the budget first. A
        // wait for one is the generator failing to send on time, so it counts as schedule lag.
        var holdsConnection = request.Protocol == RequestProtocol.Http && !_http2;
        if (holdsConnection && !await _budget.AcquireAsync(_timeout, _runToken).ConfigureAwait(false))
        {
            return await NoConnectionAsync(session, sequence, 0, request.Route, intended, tokens).ConfigureAwait(false);
        }

        try
        {
            var sent = _time.GetTimestamp();
            _metrics.RecordStart(intended, sent);
            var outcome = await _http.SendAsync(request, tokens, _runToken).ConfigureAwait(false);
            await CompleteAsync(session, sequence, 0, request.Route, outcome, intended, sent, tokens).ConfigureAwait(false);
            return outcome;
        }
        finally
        {
            if (holdsConnection)
            {
                _budget.Release();
            }
        }
    }

    /// <summary>No connection freed up within <c>--timeout</c>: the request fails as a timeout, never sent.</summary>
    private async ValueTask<Outcome> NoConnectionAsync(PlannedSession session, int sequence, int turn, string route, long intended, TokenTimes tokens)
    {
        tokens.Clear();
        var now = _time.GetTimestamp();
        var outcome = new Outcome
        {
            GrpcStatus = -1,
            Failure = FailureKind.Timeout,
            StatusKey = StatusKeys.Timeout,
            Error = string.Create(System.Globalization.CultureInfo.InvariantCulture, $"no free connection within {_timeout.TotalMilliseconds} ms: all {_budget.Limit} in use (--connections, open-file limit {_budget.OpenFileLimit})"),
            EndTimestamp = now,
        };
        _metrics.RecordStart(intended, now);
        await CompleteAsync(session, sequence, turn, route, outcome, intended, now, tokens).ConfigureAwait(false);
        return outcome;
    }

    private async ValueTask<long> RunWebSocketAsync(PlannedSession session, int sequence, PlannedRequest request, long intended, TokenTimes tokens)
    {
        var turns = request.Turns!;
        if (!await _budget.AcquireAsync(_timeout, _runToken).ConfigureAwait(false))
        {
            var end = 0L;
            for (var j = 0; j < request.RequestCount; j++)
            {
                end = (await NoConnectionAsync(session, sequence, j, request.Route, intended, tokens).ConfigureAwait(false)).EndTimestamp;
            }

            return end;
        }

        try
        {
            return await RunWebSocketConnectedAsync(session, sequence, request, intended, tokens).ConfigureAwait(false);
        }
        finally
        {
            _budget.Release();
        }
    }

    private async ValueTask<long> RunWebSocketConnectedAsync(PlannedSession session, int sequence, PlannedRequest request, long intended, TokenTimes tokens)
    {
        var turns = request.Turns!;
        var connectStart = _time.GetTimestamp();
        var (socket, failure) = await _webSockets.ConnectAsync(request, _runToken).ConfigureAwait(false);
        if (socket is null)
        {
            tokens.Clear();
            for (var j = 0; j < request.RequestCount; j++)
            {
                _metrics.RecordStart(intended, connectStart);
                await CompleteAsync(session, sequence, j, request.Route, failure, intended, connectStart, tokens).ConfigureAwait(false);
            }

            return failure.EndTimestamp;
        }

        try
        {
            if (request.WebSocketMode == WebSocketMode.Frames)
            {
                // One request: the connection, from its intended time to the end of the close handshake. Its messages
                // keep their recorded offsets from the intended time, or from the open when the upgrade took longer.
                var opened = _time.GetTimestamp();
                var firstOffset = turns.Count > 0 ? Ticks(turns[0].OffsetMs) : 0;
                var start = Math.Max(intended + firstOffset, opened) - firstOffset;
                _metrics.RecordStart(intended, connectStart);
                var framed = await _webSockets.RunFramesAsync(socket, request, start, _timer, tokens, _runToken).ConfigureAwait(false);
                await CompleteAsync(session, sequence, 0, request.Route, framed, intended, connectStart, tokens).ConfigureAwait(false);
                return framed.EndTimestamp;
            }

            var lastEnd = _time.GetTimestamp();
            var turnIntended = intended;
            Outcome? refusal = null;
            for (var j = 0; j < turns.Count; j++)
            {
                var turn = turns[j];
                if (j > 0 || turn.ThinkBeforeMs > 0)
                {
                    turnIntended = lastEnd + Ticks(turn.ThinkBeforeMs);
                    await DelayUntilAsync(turnIntended).ConfigureAwait(false);
                }

                // The first turn left when the connection was begun: the connect and upgrade (and any wait a gateway
                // imposed on them) are the target's time, not this generator's schedule lag.
                var sent = j == 0 && turnIntended == intended ? connectStart : _time.GetTimestamp();
                _metrics.RecordStart(turnIntended, sent);
                Outcome outcome;
                if (socket.State != WebSocketState.Open && refusal is { } refused)
                {
                    // A limit closed the connection: the turns it would have carried are refused too, not broken.
                    tokens.Clear();
                    outcome = refused;
                    outcome.EndTimestamp = sent;
                }
                else if (socket.State != WebSocketState.Open)
                {
                    tokens.Clear();
                    outcome = new Outcome
                    {
                        GrpcStatus = -1,
                        Failure = FailureKind.Connection,
                        StatusKey = StatusKeys.ConnectionError,
                        Error = "the WebSocket connection ended before this turn",
                        EndTimestamp = sent,
                    };
                }
                else
                {
                    outcome = await _webSockets.SendTurnAsync(socket, turn, tokens, _runToken).ConfigureAwait(false);
                    if (outcome.Failure == FailureKind.Refused)
                    {
                        refusal = outcome;
                    }
                }

                await CompleteAsync(session, sequence, j, request.Route, outcome, turnIntended, sent, tokens).ConfigureAwait(false);
                lastEnd = outcome.EndTimestamp;
                if (_runToken.IsCancellationRequested)
                {
                    break;
                }
            }

            return lastEnd;
        }
        finally
        {
            await WebSocketSender.CloseAsync(socket).ConfigureAwait(false);
        }
    }

    private ValueTask CompleteAsync(PlannedSession session, int sequence, int turn, string route, in Outcome outcome, long intended, long sent, TokenTimes tokens)
    {
        if (_runToken.IsCancellationRequested)
        {
            return ValueTask.CompletedTask; // aborted: what ends now is not a measurement
        }

        _metrics.RecordCompleted(outcome, intended, sent, route, tokens.Span);
        if (_log is null)
        {
            return ValueTask.CompletedTask;
        }

        var entry = new RequestLog.Entry(
            session.Id,
            sequence + 1,
            turn + 1,
            route,
            Ms(intended),
            Ms(sent),
            outcome.FirstTokenTimestamp == 0 ? -1 : Ms(outcome.FirstTokenTimestamp),
            Ms(outcome.EndTimestamp),
            outcome.StatusKey,
            outcome.Failure,
            outcome.Tokens,
            outcome.Error,
            _metrics.Micros(intended, outcome.EndTimestamp));
        return _log.WriteAsync(entry, _runToken);
    }

    private double Ms(long timestamp) => _time.GetElapsedTime(_startTimestamp, timestamp).TotalMilliseconds;
}

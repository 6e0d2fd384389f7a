using Polly;
using Polly.CircuitBreaker;

namespace Gateway.Shaping.Admission;

/// <summary>
/// A cluster's circuit breaker: Polly's circuit breaker strategy, whose state machine decides everything (closed, open,
/// half-open after the break, closed again by a successful trial or re-opened by a failed one).
/// </summary>
/// <remarks>
/// Polly moves an open circuit to half-open only when a call runs through its pipeline after the break, so a request
/// must reach the pipeline then: <see cref="IsBreaking"/> only lets the gateway refuse without queueing a request while
/// the break Polly announced (<c>OnOpened</c>) lasts. Polly itself refuses any other request it will not let through
/// (<see cref="BrokenCircuitException"/>, e.g. while the half-open trial is in flight).
/// </remarks>
internal sealed class ClusterBreaker
{
    private readonly TimeProvider _time;
    private long _breakEndsUtcTicks;

    public ClusterBreaker(CircuitBreakerOptions options, TimeProvider time)
    {
        _time = time;
        State = new CircuitBreakerStateProvider();
        Pipeline = new ResiliencePipelineBuilder<int> { TimeProvider = time }
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions<int>
            {
                FailureRatio = options.FailureRatio,
                MinimumThroughput = options.MinimumThroughput,
                SamplingDuration = options.SamplingDuration,
                BreakDuration = options.BreakDuration,
                StateProvider = State,
                ShouldHandle = static args => ValueTask.FromResult(args.Outcome.Exception is not null || args.Outcome.Result is 500 or 502 or 503 or 504),
                OnOpened = args =>
                {
                    Volatile.Write(ref _breakEndsUtcTicks, SafeAdd(_time.GetUtcNow(), args.BreakDuration).UtcTicks);
                    return ValueTask.CompletedTask;
                },
            })
            .Build();
    }

    /// <summary>
    /// The pipeline a request to the cluster runs through. Its result is the status the breaker judges the exchange by
    /// (5xx: a failure); while the circuit refuses, the outcome is a <see cref="BrokenCircuitException"/> or
    /// <see cref="IsolatedCircuitException"/> and the request was not sent.
    /// </summary>
    public ResiliencePipeline<int> Pipeline { get; }

    /// <summary>The circuit's state, as Polly reports it.</summary>
    public CircuitBreakerStateProvider State { get; }

    /// <summary>
    /// Whether the circuit is isolated, or open with its break not over yet: then a request is refused at once. Once the
    /// break is over the request goes on to the pipeline, where Polly lets it through as the half-open trial.
    /// </summary>
    /// <param name="retryAfter">The rest of the break (zero when isolated).</param>
    public bool IsBreaking(out TimeSpan retryAfter)
    {
        retryAfter = TimeSpan.Zero;
        switch (State.CircuitState)
        {
            case CircuitState.Isolated:
                return true;
            case CircuitState.Open:
                var left = new DateTimeOffset(Volatile.Read(ref _breakEndsUtcTicks), TimeSpan.Zero) - _time.GetUtcNow();
                if (left > TimeSpan.Zero)
                {
                    retryAfter = left;
                    return true;
                }

                return false;
            default:
                return false;
        }
    }

    /// <summary>
    /// Asks Polly's circuit whether one exchange may go to the backend. Polly's pipeline runs beside the exchange, not
    /// around it: its callback only waits for the exchange's verdict (<see cref="BreakerTicket.Report"/>), so the rest of
    /// the request path never runs inside it.
    /// </summary>
    /// <returns>A ticket when the circuit lets the exchange through (closed, or half-open and this is its trial); else
    /// no ticket (open, isolated, or half-open with its trial in flight) and the rest of the break when Polly knows it.</returns>
    public async ValueTask<(BreakerTicket? Ticket, TimeSpan? RetryAfter)> TryPassAsync(CancellationToken cancellationToken)
    {
        var ticket = new BreakerTicket();
        var context = ResilienceContextPool.Shared.Get(cancellationToken);
        var run = Pipeline.ExecuteOutcomeAsync(static async (_, t) => Outcome.FromResult(await t.Entered()), context, ticket).AsTask();
        if (!ticket.HasEntered && !run.IsCompleted)
        {
            // Polly decides synchronously today; should a version decide asynchronously, wait for whichever comes first.
            await Task.WhenAny(ticket.EnteredTask, run);
        }

        if (ticket.HasEntered)
        {
            ticket.Attach(run, context);
            return (ticket, null);
        }

        var outcome = await run;
        ResilienceContextPool.Shared.Return(context);
        return (null, outcome.Exception is BrokenCircuitException broken ? broken.RetryAfter : null);
    }

    private static DateTimeOffset SafeAdd(DateTimeOffset now, TimeSpan duration) =>
        duration >= DateTimeOffset.MaxValue - now ? DateTimeOffset.MaxValue : now + duration;
}

/// <summary>
/// One exchange's passage through a <see cref="ClusterBreaker"/>: the status it is judged by is reported once, when the
/// response starts (a long stream or WebSocket session that is the half-open trial does not hold the circuit for as long
/// as it lasts) or when the exchange ends before that; a 5xx is a failure, a client's own failure is never the backend's.
/// </summary>
internal sealed class BreakerTicket
{
    private readonly TaskCompletionSource<int> _verdict = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task<Outcome<int>>? _run;
    private ResilienceContext? _context;

    private readonly TaskCompletionSource _entered = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Whether Polly ran the callback, that is let the exchange through.</summary>
    public bool HasEntered { get; private set; }

    internal Task EnteredTask => _entered.Task;

    /// <summary>Reports the status the exchange is judged by; only the first report counts.</summary>
    public void Report(int status) => _verdict.TrySetResult(status);

    /// <summary>Reports <paramref name="status"/> if nothing was reported yet and waits for Polly to record it.</summary>
    public async ValueTask CompleteAsync(int status)
    {
        Report(status);
        try
        {
            if (_run is not null)
            {
                await _run;
            }
        }
        finally
        {
            if (_context is not null)
            {
                ResilienceContextPool.Shared.Return(_context);
                _context = null;
            }
        }
    }

    internal Task<int> Entered()
    {
        HasEntered = true;
        _entered.TrySetResult();
        return _verdict.Task;
    }

    internal void Attach(Task<Outcome<int>> run, ResilienceContext context)
    {
        _run = run;
        _context = context;
    }
}

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

    private static DateTimeOffset SafeAdd(DateTimeOffset now, TimeSpan duration) =>
        duration >= DateTimeOffset.MaxValue - now ? DateTimeOffset.MaxValue : now + duration;
}

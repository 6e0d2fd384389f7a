using Replay.Sources;

namespace Replay.Scheduling;

/// <summary>How arrivals are decided.</summary>
internal enum RunMode
{
    /// <summary>The source's own timing: each session starts at its (scaled) offset; its requests follow each other with the recorded think times.</summary>
    Faithful,

    /// <summary>Open model: arrivals from a rate profile, independent of responses; each arrival sends the next request drawn from the source.</summary>
    Open,

    /// <summary>Closed model: N users, each sending its next session as soon as the previous one ended (plus think time).</summary>
    Closed,
}

/// <summary>Everything the runner needs to know about when to send what.</summary>
internal sealed record RunPlan
{
    /// <summary>The mode.</summary>
    public required RunMode Mode { get; init; }

    /// <summary>Faithful: the timed sessions in start order. Open: the single-request items drawn round-robin. Closed: the sessions users draw round-robin.</summary>
    public required IReadOnlyList<PlannedSession> Sessions { get; init; }

    /// <summary>Open model: the rate curve.</summary>
    public RateProfile? Profile { get; init; }

    /// <summary>Open model: how arrivals spread around the curve.</summary>
    public ArrivalKind Arrivals { get; init; } = ArrivalKind.Uniform;

    /// <summary>Gamma shape (open model, gamma arrivals).</summary>
    public double Burstiness { get; init; } = 1;

    /// <summary>Seed of every random draw.</summary>
    public int Seed { get; init; }

    /// <summary>Closed model: concurrent users.</summary>
    public int Users { get; init; }

    /// <summary>Closed model: think time between a user's sessions, ms.</summary>
    public double ThinkMs { get; init; }

    /// <summary>Closed model: how long users keep sending.</summary>
    public TimeSpan? Duration { get; init; }

    /// <summary>Open and closed models: most requests to send (<c>--limit</c>).</summary>
    public long Limit { get; init; } = long.MaxValue;

    /// <summary>Most sessions in flight at once; the scheduler waits (and the wait shows as schedule lag) beyond it.</summary>
    public int MaxInflight { get; init; } = 100_000;

    /// <summary>Requests the plan will send, when known ahead (faithful replay, limited runs).</summary>
    public long? PlannedRequests { get; init; }

    /// <summary>Nominal length of the send phase in seconds (profile duration, closed duration, or the last start offset), for rates and progress.</summary>
    public double NominalSeconds { get; init; }

    /// <summary>
    /// The scheduled window in seconds: how long the schedule itself lasts, whatever the target does. Open model: the
    /// profile's duration; closed model: <c>--duration</c>; a timed replay: the source's span (its first to its last
    /// recorded request start) over <c>--speed</c>, or the last (amplified) session's start if later. Unlike the send
    /// window it does not stretch when a slow target delays a session's later requests, so two runs of one plan are
    /// compared over the same seconds. 0 when unknown (a closed run bounded only by <c>--limit</c>).
    /// </summary>
    public double ScheduledSeconds { get; init; }
}

using Replay.Sources;

namespace Replay.Scheduling;

/// <summary>Turns a workload and the run's options into a <see cref="RunPlan"/>: time scaling, amplification, flattening for the open model, the rate profile.</summary>
internal static class Planner
{
    /// <summary>What the planner needs from the command line.</summary>
    internal sealed record Options
    {
        public RunMode Mode { get; init; }
        public double Speed { get; init; } = 1;
        public double Amplify { get; init; } = 1;
        public bool AmplifyFreshPrompts { get; init; }
        public TimeSpan Spread { get; init; } = TimeSpan.FromSeconds(1);
        public string SessionHeader { get; init; } = "x-session-id";
        public RateProfile? Profile { get; init; }
        public ArrivalKind Arrivals { get; init; }
        public double Burstiness { get; init; } = 1;
        public int Seed { get; init; } = 1;
        public int Users { get; init; }
        public TimeSpan Think { get; init; }
        public TimeSpan? Duration { get; init; }
        public long? Limit { get; init; }
        public int MaxInflight { get; init; } = 100_000;
        public TimeSpan? SourceDuration { get; init; }
        public bool SessionArrivals { get; init; }
    }

    /// <summary>Builds the plan.</summary>
    public static RunPlan Build(Workload workload, Options o)
    {
        switch (o.Mode)
        {
            case RunMode.Faithful:
            {
                var scaled = Scale(workload.Sessions, o.Speed, scaleOffsets: true);
                var amplified = Amplifier.Amplify(scaled, o.Amplify, o.Spread.TotalMilliseconds / o.Speed, o.Seed, o.SessionHeader, o.AmplifyFreshPrompts);
                var sessions = o.Limit is { } limit ? Truncate(amplified, limit) : amplified;
                long planned = 0;
                double lastStartMs = 0;
                foreach (var s in sessions)
                {
                    planned += s.RequestCount;
                    lastStartMs = Math.Max(lastStartMs, s.StartOffsetMs);
                }

                return new RunPlan
                {
                    Mode = RunMode.Faithful,
                    Sessions = sessions,
                    Seed = o.Seed,
                    MaxInflight = o.MaxInflight,
                    PlannedRequests = planned,
                    NominalSeconds = o.SourceDuration is { } d ? d.TotalSeconds / o.Speed : 0,
                    // With --limit the plan keeps only the first sessions: their own starts are the schedule.
                    ScheduledSeconds = (o.Limit is null ? Math.Max(workload.SpanMs / o.Speed, lastStartMs) : lastStartMs) / 1000,
                };
            }

            case RunMode.Open:
            {
                var items = o.SessionArrivals ? Scale(workload.Sessions, o.Speed, scaleOffsets: false) : Flatten(workload.Sessions);
                return new RunPlan
                {
                    Mode = RunMode.Open,
                    Sessions = items,
                    Profile = o.Profile,
                    Arrivals = o.Arrivals,
                    Burstiness = o.Burstiness,
                    Seed = o.Seed,
                    Limit = o.Limit ?? long.MaxValue,
                    MaxInflight = o.MaxInflight,
                    PlannedRequests = !o.SessionArrivals && o.Arrivals == ArrivalKind.Uniform && o.Profile is { } p
                        ? OpenRequests(items, (long)Math.Ceiling(p.ExpectedCount - 1e-9), o.Limit ?? long.MaxValue)
                        : null,
                    NominalSeconds = o.Profile?.Duration ?? 0,
                    ScheduledSeconds = o.Profile?.Duration ?? 0,
                };
            }

            default:
                return new RunPlan
                {
                    Mode = RunMode.Closed,
                    Sessions = Scale(workload.Sessions, o.Speed, scaleOffsets: false),
                    Users = o.Users,
                    ThinkMs = o.Think.TotalMilliseconds,
                    Duration = o.Duration,
                    Limit = o.Limit ?? long.MaxValue,
                    Seed = o.Seed,
                    MaxInflight = o.MaxInflight,
                    NominalSeconds = o.Duration?.TotalSeconds ?? 0,
                    ScheduledSeconds = o.Duration?.TotalSeconds ?? 0,
                };
        }
    }

    /// <summary>
    /// Requests that <paramref name="arrivals"/> arrivals of the open model send, items drawn round-robin as the runner
    /// draws them (a WebSocket connection of k turns is k requests), stopping before the arrival that would cross
    /// <paramref name="limit"/>, as the runner does.
    /// </summary>
    internal static long OpenRequests(IReadOnlyList<PlannedSession> items, long arrivals, long limit)
    {
        if (items.Count == 0)
        {
            return 0;
        }

        var perCycle = 0L;
        var allSingle = true;
        foreach (var item in items)
        {
            perCycle += item.RequestCount;
            allSingle &= item.RequestCount == 1;
        }

        if (allSingle)
        {
            return Math.Min(limit, arrivals);
        }

        // Whole cycles of the pool first (a long run has millions of arrivals), then arrival by arrival.
        var whole = Math.Min(arrivals / items.Count, limit / Math.Max(1, perCycle));
        var requests = whole * perCycle;
        for (var i = whole * items.Count; i < arrivals; i++)
        {
            var next = requests + items[(int)(i % items.Count)].RequestCount;
            if (next > limit)
            {
                break;
            }

            requests = next;
        }

        return requests;
    }

    /// <summary>
    /// <c>--limit N</c> of a timed replay, amplification included: sessions in start order while their requests fit in
    /// N; the session that crosses N keeps only its first requests (a turn-mode WebSocket connection its first turns),
    /// so at most N requests are sent.
    /// </summary>
    internal static IReadOnlyList<PlannedSession> Truncate(IReadOnlyList<PlannedSession> sessions, long limit)
    {
        var result = new List<PlannedSession>();
        long n = 0;
        foreach (var s in sessions)
        {
            if (n >= limit)
            {
                break;
            }

            var count = s.RequestCount;
            if (n + count <= limit)
            {
                result.Add(s);
                n += count;
                continue;
            }

            var keep = limit - n;
            var requests = new List<PlannedRequest>();
            foreach (var r in s.Requests)
            {
                if (keep == 0)
                {
                    break;
                }

                if (r.RequestCount <= keep)
                {
                    requests.Add(r);
                    keep -= r.RequestCount;
                }
                else
                {
                    requests.Add(r with { Turns = [.. r.Turns!.Take((int)keep)] });
                    keep = 0;
                }
            }

            result.Add(s with { Requests = requests });
            n = limit;
        }

        return result;
    }

    /// <summary>Divides offsets and think times by <paramref name="speed"/> (2 = twice as fast).</summary>
    internal static IReadOnlyList<PlannedSession> Scale(IReadOnlyList<PlannedSession> sessions, double speed, bool scaleOffsets)
    {
        if (speed == 1)
        {
            return sessions;
        }

        var result = new List<PlannedSession>(sessions.Count);
        foreach (var s in sessions)
        {
            var requests = new PlannedRequest[s.Requests.Count];
            for (var i = 0; i < requests.Length; i++)
            {
                var r = s.Requests[i];
                List<WebSocketTurn>? turns = null;
                if (r.Turns is not null)
                {
                    turns = new List<WebSocketTurn>(r.Turns.Count);
                    foreach (var t in r.Turns)
                    {
                        turns.Add(t with { ThinkBeforeMs = t.ThinkBeforeMs / speed, OffsetMs = t.OffsetMs / speed });
                    }
                }

                requests[i] = r with { ThinkBeforeMs = r.ThinkBeforeMs / speed, Turns = turns ?? r.Turns, Close = r.Close is { } close ? close with { OffsetMs = close.OffsetMs / speed } : null };
            }

            result.Add(s with { StartOffsetMs = scaleOffsets ? s.StartOffsetMs / speed : s.StartOffsetMs, Requests = requests });
        }

        return result;
    }

    /// <summary>
    /// One item per request, in start order, each sent by one arrival of the open model; a WebSocket connection stays
    /// whole (one arrival opens it and sends its turns in order, each after the previous reply plus its think time, or
    /// its frames at their offsets), since its turns are one conversation on one connection: splitting them into
    /// one-turn connections, as this did before, sent a target N connections of one message each where the recording
    /// or template held one of N (the demo's 3-turn sessions became 24 one-message WebSocket exchanges).
    /// </summary>
    internal static IReadOnlyList<PlannedSession> Flatten(IReadOnlyList<PlannedSession> sessions)
    {
        var items = new List<PlannedSession>();
        foreach (var s in sessions)
        {
            foreach (var r in s.Requests)
            {
                if (r.Protocol == RequestProtocol.WebSocket && r.WebSocketMode == WebSocketMode.Frames)
                {
                    items.Add(s with { Requests = [r.ThinkBeforeMs == 0 ? r : r with { ThinkBeforeMs = 0 }] });
                }
                else if (r.Protocol == RequestProtocol.WebSocket && r.Turns is { Count: > 0 } turns)
                {
                    // The arrival is the connection's start: no wait before its first turn; later turns keep theirs.
                    var first = turns[0].ThinkBeforeMs == 0 ? turns : [turns[0] with { ThinkBeforeMs = 0 }, .. turns.Skip(1)];
                    items.Add(s with { Requests = [r.ThinkBeforeMs == 0 && ReferenceEquals(first, turns) ? r : r with { ThinkBeforeMs = 0, Turns = first }] });
                }
                else
                {
                    items.Add(s with { Requests = [r.ThinkBeforeMs == 0 ? r : r with { ThinkBeforeMs = 0 }] });
                }
            }
        }

        return items;
    }
}

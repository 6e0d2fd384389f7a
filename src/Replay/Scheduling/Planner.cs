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
                foreach (var s in sessions)
                {
                    planned += s.RequestCount;
                }

                return new RunPlan
                {
                    Mode = RunMode.Faithful,
                    Sessions = sessions,
                    Seed = o.Seed,
                    MaxInflight = o.MaxInflight,
                    PlannedRequests = planned,
                    NominalSeconds = o.SourceDuration is { } d ? d.TotalSeconds / o.Speed : 0,
                };
            }

            case RunMode.Open:
                return new RunPlan
                {
                    Mode = RunMode.Open,
                    Sessions = o.SessionArrivals ? Scale(workload.Sessions, o.Speed, scaleOffsets: false) : Flatten(workload.Sessions),
                    Profile = o.Profile,
                    Arrivals = o.Arrivals,
                    Burstiness = o.Burstiness,
                    Seed = o.Seed,
                    Limit = o.Limit ?? long.MaxValue,
                    MaxInflight = o.MaxInflight,
                    PlannedRequests = !o.SessionArrivals && o.Arrivals == ArrivalKind.Uniform && o.Profile is { } p ? Math.Min(o.Limit ?? long.MaxValue, (long)Math.Ceiling(p.ExpectedCount - 1e-9)) : null,
                    NominalSeconds = o.Profile?.Duration ?? 0,
                };

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
                };
        }
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

    /// <summary>One single-request item per request (a turn-mode WebSocket connection's turns become one-turn connections; a frames-mode connection stays whole), in start order.</summary>
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
                else if (r.Protocol == RequestProtocol.WebSocket && r.Turns is { Count: > 1 } turns)
                {
                    foreach (var t in turns)
                    {
                        items.Add(s with { Requests = [r with { ThinkBeforeMs = 0, Turns = [t with { ThinkBeforeMs = 0 }] }] });
                    }
                }
                else
                {
                    items.Add(s with { Requests = [r.ThinkBeforeMs == 0 && r.Turns is not { Count: > 0 } ? r : r with { ThinkBeforeMs = 0, Turns = r.Turns is null ? null : [r.Turns[0] with { ThinkBeforeMs = 0 }] }] });
                }
            }
        }

        return items;
    }
}

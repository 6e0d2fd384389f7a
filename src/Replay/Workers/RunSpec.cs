using System.Text.Json;
using System.Text.Json.Serialization;
using Replay.Cli;
using Replay.Scheduling;

namespace Replay.Workers;

/// <summary>
/// What a worker needs to take part in a run: the run's settings (every path made absolute), the schedule's epoch
/// (Unix ms; every worker measures from it), the slices and the warm-up.
/// </summary>
/// <param name="Settings">The run's settings, without <c>--workers</c>, report or assertions (the coordinator keeps those).</param>
/// <param name="EpochUnixMs">Time zero of the schedule, Unix milliseconds.</param>
/// <param name="Slices">Each slice: its session index range [First, End) and its first session's offset from the epoch, ms.</param>
/// <param name="WarmupSeconds">Unmeasured warm-up each worker runs before the epoch, at the starting rate / <paramref name="Workers"/>.</param>
/// <param name="Workers">Workers the run was split among.</param>
internal sealed record RunSpec(ReplaySettings Settings, long EpochUnixMs, IReadOnlyList<long[]> Slices, double WarmupSeconds, int Workers)
{
    /// <summary>As JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, WorkerJsonContext.Default.RunSpec);

    /// <summary>From JSON.</summary>
    /// <exception cref="JsonException">Not a spec.</exception>
    public static RunSpec FromJson(string json) => JsonSerializer.Deserialize(json, WorkerJsonContext.Default.RunSpec) ?? throw new JsonException("an empty run spec");

    /// <summary>
    /// Cuts a plan's sessions into slices of about <paramref name="seconds"/> of schedule each, by start time: the
    /// open model's arrivals (their times are a pure function of the profile and the seed) or a timed replay's sessions.
    /// </summary>
    /// <remarks>
    /// A slice also ends once it holds ⌈sessions / (2 × workers)⌉ sessions, so a schedule whose sessions crowd into one
    /// second (a timed replay that starts everything at once, a burst) is still split among the workers by session;
    /// slices that share a second then share its start time.
    /// </remarks>
    public static List<long[]> Slice(RunPlan plan, double seconds, int workers = 1)
    {
        var slices = new List<long[]>();
        long first = 0, index = 0, startMs = 0;
        var boundary = seconds;
        var total = plan.Mode == RunMode.Faithful ? plan.Sessions.Count : CountArrivals(plan);
        var most = Math.Max(1, (total + (2L * Math.Max(1, workers)) - 1) / (2L * Math.Max(1, workers)));
        void Offset(double at)
        {
            if (index - first >= most)
            {
                slices.Add([first, index, startMs]);
                first = index;
            }

            while (at >= boundary)
            {
                if (index > first)
                {
                    slices.Add([first, index, startMs]);
                    first = index;
                }

                boundary += seconds;
            }

            if (index == first)
            {
                startMs = (long)(at * 1000);
            }

            index++;
        }

        if (plan.Mode == RunMode.Faithful)
        {
            foreach (var s in plan.Sessions)
            {
                Offset(s.StartOffsetMs / 1000);
            }
        }
        else
        {
            var schedule = new ArrivalSchedule(plan.Profile!, new ArrivalProcess(plan.Arrivals, plan.Burstiness, plan.Seed), plan.Limit);
            while (schedule.TryNext(out var offset))
            {
                Offset(offset);
            }
        }

        if (index > first)
        {
            slices.Add([first, index, startMs]);
        }

        return slices;
    }

    private static long CountArrivals(RunPlan plan)
    {
        var schedule = new ArrivalSchedule(plan.Profile!, new ArrivalProcess(plan.Arrivals, plan.Burstiness, plan.Seed), plan.Limit);
        long n = 0;
        while (schedule.TryNext(out _))
        {
            n++;
        }

        return n;
    }
}

/// <summary>
/// What a worker measured about itself for one run, cumulative since it prepared the run (the latest of a worker's
/// slice results supersedes its earlier ones): the most sessions it had in flight at once, its socket budget, and its
/// process's CPU and GC since then. The coordinator adds the workers' into the report's <c>generator</c>,
/// <c>peak_concurrent_sessions</c> and <c>connections</c>.
/// </summary>
internal sealed record WorkerDiagnostics(int PeakSessions, int ConnectionLimit, long OpenFileLimit, int PeakConnections, long ConnectionWaits, Reporting.GeneratorReport Generator)
{
    /// <summary>This worker's figures for a run: <paramref name="pipeline"/>'s budget and cost, <paramref name="peakSessions"/> over its slices.</summary>
    public static WorkerDiagnostics Of(RunPipeline pipeline, int peakSessions)
    {
        var connections = pipeline.ConnectionReport();
        return new WorkerDiagnostics(peakSessions, connections.Limit, connections.OpenFileLimit, connections.PeakInUse, connections.Waits, pipeline.GeneratorSinceReady());
    }
}

/// <summary>Source-generated JSON for the worker protocol.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, Converters = [typeof(DurationJsonConverter)])]
[JsonSerializable(typeof(RunSpec))]
[JsonSerializable(typeof(WorkerDiagnostics))]
internal sealed partial class WorkerJsonContext : JsonSerializerContext;

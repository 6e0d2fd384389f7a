using Replay.Measurement;

namespace Replay.Reporting;

/// <summary>Percentiles of a distribution, in milliseconds.</summary>
internal sealed record Percentiles(long Count, double P50, double P90, double P95, double P99, double P999, double Max, double Mean)
{
    /// <summary>Reads them from a histogram of microseconds.</summary>
    public static Percentiles From(HdrHistogram.HistogramBase h) => new(
        h.TotalCount,
        Histograms.Ms(h, 50),
        Histograms.Ms(h, 90),
        Histograms.Ms(h, 95),
        Histograms.Ms(h, 99),
        Histograms.Ms(h, 99.9),
        Histograms.MaxMs(h),
        Histograms.MeanMs(h));
}

/// <summary>Count and latency of one status or route.</summary>
internal sealed record GroupReport(string Key, long Count, long Failures, Percentiles Latency);

/// <summary>
/// One second of the run. Counts: <c>Intended</c> by intended send time, <c>Sent</c> by actual send time, the rest by
/// completion time; the status mix is <c>Completed − Failures</c> succeeded, then <c>Refused</c>,
/// <c>StatusErrors</c>, <c>Timeouts</c> and <c>ConnectionErrors</c> (they add up to <c>Failures</c>). Latencies in
/// milliseconds; TTFT and inter-token time of the streams that ended in that second (0 when none).
/// </summary>
internal sealed record SecondReport(int T, long Intended, long Sent, long Completed, long Failures, long Refused, long Tokens, double P50, double P95, double P99, double Max, double LagMax)
{
    /// <summary>Failures with an error status (not refusals).</summary>
    public long StatusErrors { get; init; }

    /// <summary>Requests with no complete response in time.</summary>
    public long Timeouts { get; init; }

    /// <summary>Requests whose connection failed.</summary>
    public long ConnectionErrors { get; init; }

    /// <summary>TTFT median and p95.</summary>
    public double TtftP50 { get; init; }

    /// <summary>TTFT p95.</summary>
    public double TtftP95 { get; init; }

    /// <summary>Inter-token time median.</summary>
    public double ItlP50 { get; init; }

    /// <summary>Inter-token time p95.</summary>
    public double ItlP95 { get; init; }

    /// <summary>Refusals of this second by limit (empty when none).</summary>
    public IReadOnlyDictionary<string, long> RefusedByLimit { get; init; } = s_none;

    private static readonly Dictionary<string, long> s_none = [];
}

/// <summary>What the generator itself cost: its GC collections and pauses, CPU time and peak memory, so a reader can tell whether lag came from this process.</summary>
internal sealed record GeneratorReport(int Gen0, int Gen1, int Gen2, double GcPauseMs, double CpuSeconds, double PeakWorkingSetMb, int Cores)
{
    /// <summary>The process's counters now (CPU and peak memory 0 when /proc cannot be read: the report is still written).</summary>
    public static GeneratorReport Capture()
    {
        double cpu = 0, peak = 0;
        try
        {
            using var process = System.Diagnostics.Process.GetCurrentProcess();
            cpu = process.TotalProcessorTime.TotalSeconds;
            peak = process.PeakWorkingSet64 / (1024.0 * 1024.0);
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or UnauthorizedAccessException or System.ComponentModel.Win32Exception)
        {
            // Not worth losing the report over.
        }

        return new GeneratorReport(
            GC.CollectionCount(0),
            GC.CollectionCount(1),
            GC.CollectionCount(2),
            GC.GetTotalPauseDuration().TotalMilliseconds,
            cpu,
            peak,
            Environment.ProcessorCount);
    }

    /// <summary>The difference from <paramref name="start"/> (peak memory and cores as now).</summary>
    public GeneratorReport Since(GeneratorReport start) =>
        this with { Gen0 = Gen0 - start.Gen0, Gen1 = Gen1 - start.Gen1, Gen2 = Gen2 - start.Gen2, GcPauseMs = GcPauseMs - start.GcPauseMs, CpuSeconds = CpuSeconds - start.CpuSeconds };
}

/// <summary>
/// The socket budget of the run (<c>connections</c> in report.json): its limit (<c>--connections</c> fitted to the
/// open-file limit), that limit, the most sockets held at once and how many requests had to wait for one (their
/// wait is in the schedule lag).
/// </summary>
internal sealed record ConnectionReport(int Limit, long OpenFileLimit, int PeakInUse, long Waits);

/// <summary>One SLO's attainment.</summary>
internal sealed record SloReport(string Slo, long Met, double Attainment, double Required, bool Passed);

/// <summary>One assertion's result.</summary>
internal sealed record AssertionReport(string Expression, double? Actual, bool Passed, string? Error);

/// <summary>
/// Everything a run measured, as <c>report.json</c> holds it and <c>report.html</c> draws it. Rates:
/// <c>intended_rps</c> = requests planned / the nominal send window (the profile's duration, or the span of the
/// schedule); <c>achieved_rps</c> = requests sent / the actual send window (at least the nominal one), so a generator
/// that falls behind shows a lower achieved rate; <c>throughput_rps</c> = completed / the whole run;
/// <c>goodput.rps</c> = good requests / the actual send window, <c>goodput.scheduled_rps</c> = good requests / the
/// scheduled window (<see cref="Scheduling.RunPlan.ScheduledSeconds"/>), the same seconds for every run of one plan.
/// </summary>
internal sealed class RunReport
{
    public required string Command { get; init; }
    public required string Mode { get; init; }
    public required string Source { get; init; }
    public required string Target { get; init; }
    public string? Profile { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    public required double DurationSeconds { get; init; }
    public required double SendWindowSeconds { get; init; }

    /// <summary>The scheduled window, seconds (<see cref="Scheduling.RunPlan.ScheduledSeconds"/>; the nominal send window when the plan has none).</summary>
    public double ScheduledWindowSeconds { get; init; }
    public double Speed { get; init; } = 1;
    public double Amplify { get; init; } = 1;
    public int? Users { get; init; }
    public required long Requests { get; init; }
    public required long Planned { get; init; }
    public required long Sent { get; init; }
    public required long Succeeded { get; init; }
    public required long Failures { get; init; }
    public required double ErrorRate { get; init; }
    public required IReadOnlyDictionary<string, long> FailuresByKind { get; init; }
    public required double IntendedRps { get; init; }
    public required double AchievedRps { get; init; }
    public required double ThroughputRps { get; init; }
    public required Percentiles Latency { get; init; }
    public required Percentiles SuccessLatency { get; init; }
    public required Percentiles ServiceTime { get; init; }
    public required Percentiles ScheduleLag { get; init; }
    public Percentiles? Ttft { get; init; }
    public Percentiles? Itl { get; init; }
    public Percentiles? StreamTokensPerSecond { get; init; }
    public required long OutputTokens { get; init; }
    public required double OutputTokensPerSecond { get; init; }

    /// <summary>WebSocket messages sent to the target (one per turn; every client message of a frames-mode connection).</summary>
    public long WebSocketMessagesSent { get; init; }

    /// <summary>WebSocket messages received from the target (whole messages).</summary>
    public long WebSocketMessagesReceived { get; init; }

    /// <summary>Stream events that were neither JSON nor <c>[DONE]</c> (they count as no token).</summary>
    public long UnparseableEvents { get; init; }

    /// <summary>The first of them (shortened), or null.</summary>
    public string? FirstUnparseable { get; init; }
    public required IReadOnlyList<GroupReport> ByStatus { get; init; }
    public required IReadOnlyList<GroupReport> ByRoute { get; init; }

    /// <summary>Refusals by the limit that refused them (the gateway's <c>x-gateway-limit</c>), largest first.</summary>
    public IReadOnlyList<GroupReport> RefusedByLimit { get; init; } = [];
    public required IReadOnlyList<SloReport> Slos { get; init; }
    public required long Good { get; init; }
    public required double GoodputRps { get; init; }

    /// <summary>Good requests per second of the scheduled window (<see cref="ScheduledWindowSeconds"/>).</summary>
    public double GoodputScheduledRps { get; init; }
    public required double GoodFraction { get; init; }
    public bool CompareEnabled { get; init; }
    public long Compared { get; init; }
    public long StatusMismatches { get; init; }
    public long BodyDifferences { get; init; }
    /// <summary>Source time removed by <c>--max-gap</c>, seconds.</summary>
    public double SourceTimeRemovedSeconds { get; init; }

    /// <summary>Source records stored out of time order (sorted), or null when none were.</summary>
    public Sources.OutOfOrder? OutOfOrder { get; init; }

    public required long SkippedRecords { get; init; }
    public required IReadOnlyList<Sources.SkippedRecord> Skipped { get; init; }
    public required IReadOnlyList<SecondReport> Series { get; init; }
    public required IReadOnlyList<(double Percentile, double Ms)> Distribution { get; init; }
    public IReadOnlyList<AssertionReport> Assertions { get; set; } = [];
    public bool Cancelled { get; init; }
    public GeneratorReport? Generator { get; set; }
    public int PeakConcurrentSessions { get; set; }
    public ConnectionReport? Connections { get; set; }
    public Workers.WorkersReport? Workers { get; set; }
    public ConversationReport? Conversations { get; set; }

    /// <summary>The target's prefix cache over the run (vLLM counters), or null when no metrics URL had them.</summary>
    public Measurement.PrefixCacheReport? PrefixCache { get; set; }
}

/// <summary>
/// Generated conversations (<c>conversations</c> in report.json): how many started, turns per conversation, user
/// turns written by the generator and taken from the cache, generator failures, the SHA-256 digest of every user
/// turn (equal digests: the same conversations), the first conversation's user turns, and the cache file.
/// </summary>
internal sealed record ConversationReport(long Conversations, int Turns, long Generated, long CacheHits, long Failures, string Digest, IReadOnlyList<string> Sample, string? CacheFile, string? FirstFailure = null);

using System.Text.Json.Serialization;

namespace Replay.Reporting;

/// <summary>
/// <c>report.json</c> as one record type: <see cref="ReportJson"/> writes it and <c>replay compare</c> reads it back,
/// both through the source-generated <see cref="ReportJsonContext"/> (snake_case; times in milliseconds, figures rounded
/// to 3 decimals). docs/replay.md lists every field. Optional parts are null: written as null, except
/// <see cref="Users"/>, <see cref="Generator"/>, <see cref="Connections"/>, <see cref="Conversations"/> and
/// <see cref="Workers"/>, which are left out when absent.
/// </summary>
internal sealed record ReportDocument
{
    /// <summary>Always <c>replay</c>.</summary>
    public string Tool { get; init; } = "replay";

    /// <summary>Version of this shape.</summary>
    public int ReportVersion { get; init; } = 1;

    public string Command { get; init; } = string.Empty;
    public string Mode { get; init; } = string.Empty;
    public string Source { get; init; } = string.Empty;
    public string Target { get; init; } = string.Empty;
    public string? Profile { get; init; }
    public DateTimeOffset StartedAt { get; init; }
    public double DurationS { get; init; }
    public double SendWindowS { get; init; }

    /// <summary>The schedule's own length, seconds: profile or closed duration, or a timed replay's source span over --speed (0 in reports written before it existed).</summary>
    public double ScheduledWindowS { get; init; }
    public double Speed { get; init; } = 1;
    public double Amplify { get; init; } = 1;

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? Users { get; init; }

    public bool Cancelled { get; init; }

    /// <summary>Requests measured; null only when the file is not a replay report.</summary>
    public long? Requests { get; init; }

    public long Planned { get; init; }
    public int PeakConcurrentSessions { get; init; }
    public long Sent { get; init; }
    public long Succeeded { get; init; }
    public long Failures { get; init; }
    public double ErrorRate { get; init; }
    public Dictionary<string, long> FailuresByKind { get; init; } = [];
    public double IntendedRps { get; init; }
    public double AchievedRps { get; init; }
    public double ThroughputRps { get; init; }
    public PercentilesDocument? LatencyMs { get; init; }
    public PercentilesDocument? SuccessLatencyMs { get; init; }
    public PercentilesDocument? ServiceTimeMs { get; init; }
    public PercentilesDocument? ScheduleLagMs { get; init; }
    public PercentilesDocument? TtftMs { get; init; }
    public PercentilesDocument? ItlMs { get; init; }
    public PercentilesDocument? StreamTokensPerS { get; init; }
    public long OutputTokens { get; init; }
    public double OutputTokensPerS { get; init; }
    public WebSocketMessagesDocument? WebsocketMessages { get; init; }
    public UnparseableDocument? UnparseableEvents { get; init; }
    public Dictionary<string, GroupDocument> ByStatus { get; init; } = [];
    public Dictionary<string, GroupDocument> ByRoute { get; init; } = [];
    public Dictionary<string, GroupDocument> RefusedByLimit { get; init; } = [];
    public GoodputDocument? Goodput { get; init; }
    public ComparisonDocument? Comparison { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public GeneratorDocument? Generator { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public ConnectionsDocument? Connections { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public ConversationsDocument? Conversations { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public WorkersDocument? Workers { get; init; }

    /// <summary>Prompt tokens found in the target's prefix cache / prompt tokens looked up, over the run (vLLM counters); left out when the target has none.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? PrefixCacheHitRate { get; init; }

    /// <summary>The counters' increases and the metrics URLs read; left out when the target has none.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public PrefixCacheDocument? PrefixCache { get; init; }

    public double SourceTimeRemovedS { get; init; }
    public OutOfOrderDocument? OutOfOrderRecords { get; init; }
    public long SkippedRecords { get; init; }
    public List<SkippedDocument> Skipped { get; init; } = [];
    public List<AssertionDocument> Assertions { get; init; } = [];
    public List<DistributionPoint> LatencyDistribution { get; init; } = [];
    public List<SecondDocument> Series { get; init; } = [];
}

/// <summary>A distribution in milliseconds (<c>count</c> samples).</summary>
internal sealed record PercentilesDocument(
    long Count,
    [property: JsonPropertyName("p50")] double P50,
    [property: JsonPropertyName("p90")] double P90,
    [property: JsonPropertyName("p95")] double P95,
    [property: JsonPropertyName("p99")] double P99,
    [property: JsonPropertyName("p999")] double P999,
    double Max,
    double Mean);

internal sealed record WebSocketMessagesDocument(long Sent, long Received);

internal sealed record UnparseableDocument(long Count, string? First);

internal sealed record GroupDocument(long Count, long Failures, PercentilesDocument LatencyMs);

internal sealed record SloDocument(string Slo, long Met, double Attainment, double Required, bool Passed);

/// <summary>Goodput: good requests, per second of the send window (<c>rps</c>) and of the scheduled window (<c>scheduled_rps</c>), their fraction, the SLOs.</summary>
internal sealed record GoodputDocument(long Requests, double Rps, double Fraction, List<SloDocument> Slos)
{
    /// <summary>Good requests per second of the scheduled window (null in reports written before it existed).</summary>
    public double? ScheduledRps { get; init; }
}

internal sealed record ComparisonDocument(long Compared, long StatusMismatches, long BodyDifferences);

internal sealed record GeneratorDocument(
    [property: JsonPropertyName("gc_gen0")] int GcGen0,
    [property: JsonPropertyName("gc_gen1")] int GcGen1,
    [property: JsonPropertyName("gc_gen2")] int GcGen2,
    double GcPauseMs,
    double CpuS,
    double PeakWorkingSetMb,
    int Cores);

internal sealed record ConnectionsDocument(int Limit, long OpenFileLimit, int PeakInUse, long Waits);

/// <summary>
/// <c>prefix_cache</c>: prompt tokens looked up and found cached during the run, the metrics URLs summed, and (when
/// some failed) <c>partial: true</c> with each failed URL and why in <c>failed_metrics_urls</c>.
/// </summary>
internal sealed record PrefixCacheDocument(double Queries, double Hits, List<string> MetricsUrls)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Partial { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public List<string>? FailedMetricsUrls { get; init; }
}

internal sealed record ConversationsDocument(long Conversations, int Turns, long Generated, long CacheHits, long Failures, string? FirstFailure, string Digest, List<string> Sample)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? CacheFile { get; init; }
}

internal sealed record WorkersDocument(string Run, int Workers, List<string> Names, int Slices, int TakenOver, long LostSessions, int MissingSlices);

internal sealed record OutOfOrderDocument(long Count, long LargestDisplacement, double LargestMs);

internal sealed record SkippedDocument(string Position, string Reason);

internal sealed record AssertionDocument([property: JsonPropertyName("assert")] string Assert, double? Actual, bool Passed)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Error { get; init; }
}

internal sealed record DistributionPoint(double Percentile, double Ms);

/// <summary>One second of <c>series</c>.</summary>
internal sealed record SecondDocument(
    int T,
    long Intended,
    long Sent,
    long Completed,
    long Failures,
    long Refused,
    long StatusErrors,
    long Timeouts,
    long ConnectionErrors,
    Dictionary<string, long> RefusedByLimit,
    long Tokens,
    [property: JsonPropertyName("p50_ms")] double P50Ms,
    [property: JsonPropertyName("p95_ms")] double P95Ms,
    [property: JsonPropertyName("p99_ms")] double P99Ms,
    double MaxMs,
    double LagMaxMs,
    [property: JsonPropertyName("ttft_p50_ms")] double TtftP50Ms,
    [property: JsonPropertyName("ttft_p95_ms")] double TtftP95Ms,
    [property: JsonPropertyName("itl_p50_ms")] double ItlP50Ms,
    [property: JsonPropertyName("itl_p95_ms")] double ItlP95Ms);

/// <summary>The source-generated serializer of <see cref="ReportDocument"/>: snake_case, indented, nulls written unless a property says otherwise.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true, AllowTrailingCommas = true, ReadCommentHandling = System.Text.Json.JsonCommentHandling.Skip)]
[JsonSerializable(typeof(ReportDocument))]
internal sealed partial class ReportJsonContext : JsonSerializerContext;

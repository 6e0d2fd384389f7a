namespace Gateway.Configuration;

/// <summary>
/// Bounds shared by the option records' <see cref="System.ComponentModel.DataAnnotations.RangeAttribute"/>s, so that a
/// value a library would refuse (with an exception, at start-up or on the first request) is refused by our validation
/// first, with its key named.
/// </summary>
internal static class ConfigRanges
{
    /// <summary>
    /// Longest duration the gateway accepts for anything that becomes a timer or a timeout: .NET's timers and
    /// <c>CancelAfter</c> take at most 2^32-2 ms and <c>SocketsHttpHandler.ConnectTimeout</c> at most
    /// <c>int.MaxValue</c> ms (24.8 days); 24 days is below both.
    /// </summary>
    public const string MaxDuration = "24.00:00:00";

    /// <summary>The shortest positive duration we accept: one millisecond (timers have millisecond resolution).</summary>
    public const string MinDuration = "00:00:00.001";

    /// <summary>Longest age or time to live of stored data (Redis retention): ten years, far from DateTime overflow.</summary>
    public const string MaxRetention = "3650.00:00:00";

    /// <summary>Polly's <c>CircuitBreakerStrategyOptions</c> range for <c>SamplingDuration</c> and <c>BreakDuration</c>: 0.5 s to 1 day.</summary>
    public const string PollyMinDuration = "00:00:00.500";

    /// <inheritdoc cref="PollyMinDuration"/>
    public const string PollyMaxDuration = "1.00:00:00";

    /// <summary>
    /// Most segments of a sliding window: System.Threading.RateLimiting allocates one counter per segment for every
    /// partition, so a huge value would exhaust memory on the first request.
    /// </summary>
    public const int MaxSegmentsPerWindow = 1000;
}

namespace Gateway.Shaping;

/// <summary>
/// One log line per refusal, at a rate that cannot flood the log: at most one line per limit and reason every
/// <c>Gateway:Shaping:RefusalLogInterval</c>, saying how many were left out since the last line. Every refusal is
/// counted in metrics whatever is logged.
/// </summary>
internal sealed partial class RefusalLog(ILogger<RefusalLog> logger, TimeProvider time)
{
    private readonly Telemetry.LogThrottle _throttle = new(time, TimeSpan.FromSeconds(10));

    public void Refused(string limit, string reason, string partition, bool shadow, TimeSpan interval)
    {
        if (!_throttle.ShouldLog((limit, reason), out var suppressed, interval))
        {
            return;
        }

        if (shadow)
        {
            Log.WouldRefuse(logger, limit, reason, partition, suppressed);
        }
        else
        {
            Log.Refused(logger, limit, reason, partition, suppressed);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 4001, Level = LogLevel.Information, Message = "Refused by {Limit} ({Reason}) for partition {Partition}; {Suppressed} more such refusals since the last line.")]
        public static partial void Refused(ILogger logger, string limit, string reason, string partition, long suppressed);

        [LoggerMessage(EventId = 4002, Level = LogLevel.Information, Message = "Shadow policy {Limit} would refuse ({Reason}) partition {Partition}; admitted. {Suppressed} more since the last line.")]
        public static partial void WouldRefuse(ILogger logger, string limit, string reason, string partition, long suppressed);
    }
}

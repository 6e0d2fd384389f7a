using Microsoft.Extensions.Logging;

namespace Replay.Cli;

internal static partial class ReplayApp
{
    /// <summary>Source-generated log messages of the CLI (event ids 1xxx).</summary>
    internal static partial class Log
    {
        [LoggerMessage(EventId = 1001, Level = LogLevel.Warning, Message = "skipped {Position}: {Reason}")]
        public static partial void SkippedRecord(ILogger logger, string position, string reason);

        [LoggerMessage(EventId = 1002, Level = LogLevel.Warning, Message = "{Count} record(s) of the source skipped in all (the report lists the first {Kept})")]
        public static partial void SkippedTotal(ILogger logger, long count, int kept);

        [LoggerMessage(EventId = 1003, Level = LogLevel.Information, Message = "report written: {Json} and {Html}")]
        public static partial void ReportWritten(ILogger logger, string json, string html);

        [LoggerMessage(EventId = 1004, Level = LogLevel.Information, Message = "{Mode} run: {Source}; {Sessions} session(s) to draw from; planned: {Planned}")]
        public static partial void Planned(ILogger logger, string mode, string source, int sessions, string planned);

        [LoggerMessage(EventId = 1005, Level = LogLevel.Error, Message = "unexpected error")]
        public static partial void Unexpected(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 1007, Level = LogLevel.Warning, Message = "{Count} source record(s) were stored out of time order and were sorted by start (largest displacement {Displacement} position(s), {LargestMs} ms)")]
        public static partial void OutOfOrder(ILogger logger, long count, long displacement, double largestMs);

        [LoggerMessage(EventId = 1009, Level = LogLevel.Warning, Message = "the replay's last session starts {Span} (days.hh:mm:ss) after its first: a record stamped far from the others? --max-gap DURATION cuts idle stretches, --duration bounds the run")]
        public static partial void LongPlan(ILogger logger, string span);

        [LoggerMessage(EventId = 1008, Level = LogLevel.Information, Message = "--max-gap removed {Seconds} s of idle source time")]
        public static partial void GapsRemoved(ILogger logger, double seconds);

        [LoggerMessage(EventId = 1006, Level = LogLevel.Warning, Message = "--connections {Requested} does not fit the open-file limit ({OpenFileLimit}); using {Limit} (raise it with ulimit -n)")]
        public static partial void ConnectionsLowered(ILogger logger, int requested, int limit, long openFileLimit);
    }
}

/// <summary>A minimal logger that writes <c>replay: level: message</c> lines to a <see cref="TextWriter"/> (stderr).</summary>
internal sealed class TextWriterLogger(TextWriter writer, LogLevel minimum) : ILogger
{
    private readonly Lock _gate = new();

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum && logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel))
        {
            return;
        }

        var level = logLevel switch
        {
            LogLevel.Warning => "warning: ",
            LogLevel.Error or LogLevel.Critical => "error: ",
            _ => string.Empty,
        };
        lock (_gate)
        {
            writer.WriteLine($"replay: {level}{formatter(state, exception)}");
            if (exception is not null)
            {
                writer.WriteLine(exception.ToString());
            }
        }
    }
}

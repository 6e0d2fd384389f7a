using Microsoft.Extensions.Logging;

namespace ModelSim.Engine;

internal sealed partial class GenerationEngine
{
    private static partial class Log
    {
        [LoggerMessage(EventId = 1001, Level = LogLevel.Warning,
            Message = "Collapsed (Sim:CollapseQueue={CollapseQueue}): running and queued requests failed; every request fails for {CollapseMs} ms.")]
        public static partial void Collapsed(ILogger logger, int collapseQueue, double collapseMs);

        [LoggerMessage(EventId = 1002, Level = LogLevel.Information, Message = "Stalled: generation frozen for {StallMs} ms.")]
        public static partial void Stalled(ILogger logger, double stallMs);
    }
}

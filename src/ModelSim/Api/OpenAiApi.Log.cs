using Microsoft.Extensions.Logging;

namespace ModelSim.Api;

internal sealed partial class OpenAiApi
{
    private static partial class Log
    {
        [LoggerMessage(EventId = 2001, Level = LogLevel.Debug, Message = "Bad request on {Path}: {Code}: {Message}")]
        public static partial void BadRequest(ILogger logger, string path, string code, string message);

        [LoggerMessage(EventId = 2002, Level = LogLevel.Debug, Message = "Stream on {Path} cut off by a collapse or shutdown; connection aborted.")]
        public static partial void StreamBroken(ILogger logger, string path);
    }
}

using System.Net.WebSockets;
using Microsoft.Extensions.Logging;

namespace ModelSim.Api;

internal sealed partial class WebSocketEndpoint
{
    private static partial class Log
    {
        [LoggerMessage(EventId = 2101, Level = LogLevel.Debug, Message = "WebSocket receive loop ended (state {State}).")]
        public static partial void ReceiveEnded(ILogger logger, WebSocketState state);
    }
}

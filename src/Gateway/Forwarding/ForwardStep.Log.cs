namespace Gateway.Forwarding;

internal sealed partial class ForwardStep
{
    private static partial class Log
    {
        [LoggerMessage(EventId = 2101, Level = LogLevel.Information,
            Message = "WebSocket on route {Route} idle for {IdleTimeout} (Gateway:Limits:WebSocketIdleTimeout): closed with 1001 on both sides.")]
        public static partial void WebSocketIdleClosed(ILogger logger, string route, TimeSpan idleTimeout);
    }
}

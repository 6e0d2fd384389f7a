namespace Gateway.Tenants;

internal sealed partial class AuthStep
{
    private static partial class Log
    {
        [LoggerMessage(EventId = 6001, Level = LogLevel.Warning, Message = "Authentication refused a request ({Reason}) from {Client} on route {Route} ({Suppressed} more of this reason since the last line).")]
        public static partial void Refused(ILogger logger, string reason, string client, string route, long suppressed);
    }
}

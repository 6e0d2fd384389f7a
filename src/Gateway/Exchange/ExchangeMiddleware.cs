using Gateway.Listeners;
using Gateway.Telemetry;
using Yarp.ReverseProxy.Model;

namespace Gateway.Exchange;

/// <summary>
/// The first step of every request: creates the <see cref="ExchangeContext"/>, and when the exchange ends,
/// whatever the outcome, records it once: the request log line (route, status, duration) and the metrics.
/// A client that went away is accounted as 499 (client closed request, as nginx names it), never as the 502 or
/// 400 that a proxy would otherwise report for a cancelled backend call.
/// </summary>
internal sealed partial class ExchangeMiddleware
{
    /// <summary>Status recorded for an exchange whose client disconnected before it completed.</summary>
    public const int ClientClosedRequest = 499;

    private static readonly Func<object, Task> s_responseStarted = static state =>
    {
        var exchange = (ExchangeContext)state;
        exchange.ResponseStarted = exchange.Time.GetTimestamp();
        return Task.CompletedTask;
    };

    private readonly RequestDelegate _next;
    private readonly GatewayMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger _requestLog;

    public ExchangeMiddleware(RequestDelegate next, GatewayMetrics metrics, TimeProvider time, ILoggerFactory loggerFactory)
    {
        _next = next;
        _metrics = metrics;
        _time = time;
        _requestLog = loggerFactory.CreateLogger("Gateway.Requests");
    }

    public async Task InvokeAsync(HttpContext context)
    {
        var listener = context.GetListener() ?? ListenerName.Http;
        var exchange = new ExchangeContext
        {
            Listener = listener,
            StartTimestamp = _time.GetTimestamp(),
            StartTime = _time.GetUtcNow(),
            ClientAborted = context.RequestAborted,
            Time = _time,
        };
        context.Features.Set(exchange);
        context.Response.OnStarting(s_responseStarted, exchange);
        var listenerTag = listener.Tag();
        _metrics.RequestStarted(listenerTag);

        try
        {
            await _next(context);
        }
        finally
        {
            Complete(context, exchange, listenerTag);
        }
    }

    private void Complete(HttpContext context, ExchangeContext exchange, string listenerTag)
    {
        if (exchange.RouteId is null && context.GetEndpoint()?.Metadata.GetMetadata<RouteModel>() is { } route)
        {
            exchange.RouteId = route.Config.RouteId;
            exchange.ClusterId ??= route.Config.ClusterId;
        }

        var status = exchange.IsClientAbort ? ClientClosedRequest : context.Response.StatusCode;
        var elapsed = _time.GetElapsedTime(exchange.StartTimestamp);
        var routeTag = exchange.RouteId ?? "(none)";
        // Time to first token: when a stream's response started (YARP sends the headers with the first body bytes).
        double? ttft = exchange.ResponseStarted != 0 && IsStream(context.Response.ContentType)
            ? _time.GetElapsedTime(exchange.StartTimestamp, exchange.ResponseStarted).TotalSeconds
            : null;
        _metrics.RequestCompleted(listenerTag, routeTag, status, elapsed.TotalSeconds, ttft);

        if (_requestLog.IsEnabled(LogLevel.Information))
        {
            Log.Request(_requestLog, listenerTag, context.Request.Method, context.Request.Path.Value ?? "/", routeTag, status, elapsed.TotalMilliseconds,
                exchange.IsClientAbort ? " (client aborted)" : exchange.TimedOut ? " (route timeout)" : string.Empty);
        }
    }

    private static bool IsStream(string? contentType) =>
        contentType is not null
        && (contentType.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase) || contentType.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase));

    private static partial class Log
    {
        [LoggerMessage(EventId = 1001, Level = LogLevel.Information,
            Message = "{Listener} {Method} {Path} route={Route} status={Status} duration={DurationMs:F1}ms{Note}")]
        public static partial void Request(ILogger logger, string listener, string method, string path, string route, int status, double durationMs, string note);
    }
}

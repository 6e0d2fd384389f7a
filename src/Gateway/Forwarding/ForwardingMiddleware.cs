using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Gateway.Exchange;
using Grpc.Core;
using Microsoft.AspNetCore.Http.Timeouts;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Model;

namespace Gateway.Forwarding;

/// <summary>
/// The first step of the proxy pipeline: fills the exchange's route and cluster, applies timeouts that fit LLM
/// traffic, and turns forwarding failures into answers a client can act on.
/// </summary>
/// <remarks>
/// Two timeout settings meet here:
/// <list type="bullet">
/// <item>the cluster's <c>HttpRequest:ActivityTimeout</c>, an idle timeout meant for short calls (YARP cuts a call
/// whose backend is silent for that long, answering 504);</item>
/// <item>the route's <c>Timeout</c>, the whole exchange's bound (ASP.NET Core request timeouts).</item>
/// </list>
/// A generation can be silent for a long time (a long prompt's prefill, a non-streamed answer) and still be
/// healthy, so on a route that declares a <c>Timeout</c> the idle timeout is raised to that timeout: the route's
/// bound alone applies. When the route's timeout fires, the client gets 504 (gRPC DEADLINE_EXCEEDED) before the
/// response started, or a reset stream after: never the 400 or 502 that YARP reports for a cancelled call
/// (it cannot tell a timeout's cancellation from a client's).
/// <para>
/// YARP answers a failed forward with a bare status; here a body is added before anything was sent:
/// 502 <c>backend_unreachable</c>, 503 <c>no_available_destination</c>, 504 <c>backend_timeout</c>. A request whose
/// header value cannot be forwarded (not ASCII) is answered 400 <c>invalid_header</c> and never forwarded.
/// </para>
/// </remarks>
internal sealed partial class ForwardingMiddleware
{
    private readonly RequestDelegate _next;
    private readonly TimeSpan _webSocketIdle;
    private readonly ILogger<ForwardingMiddleware> _logger;
    private readonly TimeProvider _time;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string, ForwarderError), long[]> _logged = new();

    // Per cluster model (YARP replaces it on every reload) and timeout, the same cluster with a longer idle timeout.
    private readonly ConditionalWeakTable<ClusterModel, ConcurrentDictionary<TimeSpan, ClusterModel>> _extended = [];

    public ForwardingMiddleware(RequestDelegate next, Configuration.GatewayLimitsOptions limits, ILogger<ForwardingMiddleware> logger, TimeProvider time)
    {
        _next = next;
        _webSocketIdle = limits.WebSocketIdleTimeout;
        _logger = logger;
        _time = time;
    }

    public async Task InvokeAsync(HttpContext context)
    {
        var proxy = context.GetReverseProxyFeature();
        var exchange = context.GetExchange();
        if (exchange is not null)
        {
            exchange.RouteId = proxy.Route.Config.RouteId;
            exchange.ClusterId = proxy.Route.Config.ClusterId;
        }

        if (UnforwardableHeader(context.Request.Headers) is { } header)
        {
            // SocketsHttpHandler sends header values as ASCII only; refused here, before anything is forwarded or counted
            // against the backend, instead of YARP failing the forward as a 502.
            await ErrorResponses.WriteAsync(context, StatusCodes.Status400BadRequest, StatusCode.InvalidArgument, "invalid_request", "invalid_header",
                $"The value of request header '{header}' has non-ASCII characters, which cannot be forwarded; encode it (for example percent-encoding, RFC 8187).");
            return;
        }

        // A WebSocket chat session is silent between turns: its idle bound is Gateway:Limits:WebSocketIdleTimeout. A route
        // with a Timeout is bounded by that timeout alone.
        var longIdle = Listeners.ListenerMatcherPolicy.IsWebSocketUpgrade(context) ? _webSocketIdle
            : proxy.Route.Config.Timeout is { } routeTimeout && routeTimeout > TimeSpan.Zero && routeTimeout != Timeout.InfiniteTimeSpan ? routeTimeout
            : TimeSpan.Zero;
        if (longIdle > TimeSpan.Zero)
        {
            var idle = proxy.Cluster.Config.HttpRequest?.ActivityTimeout ?? TimeSpan.FromSeconds(100);
            if (idle < longIdle && proxy is ReverseProxyFeature feature)
            {
                feature.Cluster = WithActivityTimeout(proxy.Cluster, longIdle);
            }
        }

        await _next(context);

        if (exchange is { IsClientAbort: true })
        {
            return;
        }

        var timeout = context.Features.Get<IHttpRequestTimeoutFeature>();
        if (timeout is not null && timeout.RequestTimeoutToken.IsCancellationRequested)
        {
            exchange?.TimedOut = true;
            await ErrorResponses.WriteAsync(context, StatusCodes.Status504GatewayTimeout, StatusCode.DeadlineExceeded, "timeout", "route_timeout",
                $"The model server did not complete within the route's timeout ({proxy.Route.Config.Timeout}).");
            return;
        }

        if (context.Features.Get<IForwarderErrorFeature>() is { } error)
        {
            LogBackendError(proxy.Route.Config.ClusterId ?? "?", error);
            if (!context.Response.HasStarted)
            {
                await WriteForwarderErrorAsync(context, error.Error, proxy.Route.Config.ClusterId);
            }
        }
    }

    /// <summary>The name of the first request header whose value has a character outside ASCII, which the forwarder cannot send.</summary>
    internal static string? UnforwardableHeader(IHeaderDictionary headers)
    {
        foreach (var (name, values) in headers)
        {
            foreach (var value in values)
            {
                if (value is not null && !System.Text.Ascii.IsValid(value))
                {
                    return name;
                }
            }
        }

        return null;
    }

    /// <summary>
    /// One warning per cluster and kind of backend failure every 10 seconds, with how many were left out, and no stack
    /// trace (YARP's own forwarder log, which writes one with a stack trace per failure, is kept at Error in
    /// appsettings.json). Failures caused by the client (a body too large, a client that went away) are not logged:
    /// they are counted in gateway_requests_total.
    /// </summary>
    private void LogBackendError(string cluster, IForwarderErrorFeature error)
    {
        if (error.Error is ForwarderError.None or ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled or ForwarderError.RequestBodyClient
            or ForwarderError.ResponseBodyCanceled or ForwarderError.ResponseBodyClient or ForwarderError.UpgradeRequestCanceled
            or ForwarderError.UpgradeRequestClient or ForwarderError.UpgradeResponseCanceled or ForwarderError.UpgradeResponseClient)
        {
            return;
        }

        var state = _logged.GetOrAdd((cluster, error.Error), static _ => new long[2]);
        var now = _time.GetTimestamp();
        long suppressed;
        lock (state)
        {
            if (state[0] != 0 && _time.GetElapsedTime(state[0], now) < TimeSpan.FromSeconds(10))
            {
                state[1]++;
                return;
            }

            suppressed = state[1];
            state[0] = now;
            state[1] = 0;
        }

        Log.BackendFailed(_logger, cluster, error.Error.ToString(), error.Exception?.GetBaseException().Message ?? "no detail", suppressed);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 2001, Level = LogLevel.Warning, Message = "Backend failure in cluster {Cluster}: {Error}: {Reason} ({Suppressed} more since the last line).")]
        public static partial void BackendFailed(ILogger logger, string cluster, string error, string reason, long suppressed);
    }

    private static Task WriteForwarderErrorAsync(HttpContext context, ForwarderError error, string? cluster) => error switch
    {
        ForwarderError.NoAvailableDestinations => ErrorResponses.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, StatusCode.Unavailable,
            "unavailable", "no_available_destination", $"No healthy model server in cluster '{cluster}'.", TimeSpan.FromSeconds(1)),
        ForwarderError.RequestTimedOut => ErrorResponses.WriteAsync(context, StatusCodes.Status504GatewayTimeout, StatusCode.DeadlineExceeded,
            "timeout", "backend_timeout", $"The model server in cluster '{cluster}' was silent for longer than the cluster's activity timeout."),
        ForwarderError.RequestBodyClient when context.Response.StatusCode == StatusCodes.Status413PayloadTooLarge => ErrorResponses.WriteAsync(context,
            StatusCodes.Status413PayloadTooLarge, StatusCode.ResourceExhausted, "invalid_request", "request_too_large",
            "The request body is larger than the gateway accepts (Gateway:Limits:MaxRequestBodyBytes)."),
        ForwarderError.RequestBodyClient => ErrorResponses.WriteAsync(context, StatusCodes.Status400BadRequest, StatusCode.InvalidArgument,
            "invalid_request", "bad_request_body", "The request body could not be read (the client sent an invalid or incomplete body)."),
        ForwarderError.Request or ForwarderError.RequestCreation or ForwarderError.ResponseHeaders => ErrorResponses.WriteAsync(context,
            StatusCodes.Status502BadGateway, StatusCode.Unavailable, "bad_gateway", "backend_unreachable",
            $"The model server in cluster '{cluster}' could not be reached or gave an invalid answer."),
        _ => Task.CompletedTask, // Body errors keep YARP's status (400/413 for the client's body, 502 for the backend's).
    };

    private ClusterModel WithActivityTimeout(ClusterModel cluster, TimeSpan activityTimeout) =>
        _extended.GetValue(cluster, static _ => new ConcurrentDictionary<TimeSpan, ClusterModel>())
            .GetOrAdd(activityTimeout, static (t, c) => new ClusterModel(
                c.Config with { HttpRequest = (c.Config.HttpRequest ?? ForwarderRequestConfig.Empty) with { ActivityTimeout = t } },
                c.HttpClient), cluster);
}

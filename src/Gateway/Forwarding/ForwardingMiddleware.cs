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
/// 502 <c>backend_unreachable</c>, 503 <c>no_available_destination</c>, 504 <c>backend_timeout</c>.
/// </para>
/// </remarks>
internal sealed class ForwardingMiddleware
{
    private readonly RequestDelegate _next;

    // Per cluster model (YARP replaces it on every reload) and timeout, the same cluster with a longer idle timeout.
    private readonly ConditionalWeakTable<ClusterModel, ConcurrentDictionary<TimeSpan, ClusterModel>> _extended = [];

    public ForwardingMiddleware(RequestDelegate next) => _next = next;

    public async Task InvokeAsync(HttpContext context)
    {
        var proxy = context.GetReverseProxyFeature();
        var exchange = context.GetExchange();
        if (exchange is not null)
        {
            exchange.RouteId = proxy.Route.Config.RouteId;
            exchange.ClusterId = proxy.Route.Config.ClusterId;
        }

        if (proxy.Route.Config.Timeout is { } routeTimeout && routeTimeout > TimeSpan.Zero && routeTimeout != Timeout.InfiniteTimeSpan)
        {
            var idle = proxy.Cluster.Config.HttpRequest?.ActivityTimeout ?? TimeSpan.FromSeconds(100);
            if (idle < routeTimeout && proxy is ReverseProxyFeature feature)
            {
                feature.Cluster = WithActivityTimeout(proxy.Cluster, routeTimeout);
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

        if (context.Features.Get<IForwarderErrorFeature>() is { } error && !context.Response.HasStarted)
        {
            await WriteForwarderErrorAsync(context, error.Error, proxy.Route.Config.ClusterId);
        }
    }

    private static Task WriteForwarderErrorAsync(HttpContext context, ForwarderError error, string? cluster) => error switch
    {
        ForwarderError.NoAvailableDestinations => ErrorResponses.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, StatusCode.Unavailable,
            "unavailable", "no_available_destination", $"No healthy model server in cluster '{cluster}'.", TimeSpan.FromSeconds(1)),
        ForwarderError.RequestTimedOut => ErrorResponses.WriteAsync(context, StatusCodes.Status504GatewayTimeout, StatusCode.DeadlineExceeded,
            "timeout", "backend_timeout", $"The model server in cluster '{cluster}' was silent for longer than the cluster's activity timeout."),
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

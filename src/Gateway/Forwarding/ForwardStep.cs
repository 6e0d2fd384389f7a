using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Gateway.Exchange;
using Microsoft.AspNetCore.Http.Features;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Model;

namespace Gateway.Forwarding;

/// <summary>
/// The last of the gateway's steps before YARP's own (session affinity, load balancing, passive health, forwarder):
/// installs the response and upgrade filters the steps registered (inside the capture taps, next to the forwarder,
/// whatever order the steps registered them in), and gives the cluster
/// an idle timeout that fits LLM traffic.
/// </summary>
/// <remarks>
/// Two timeout settings meet here:
/// <list type="bullet">
/// <item>the cluster's <c>HttpRequest:ActivityTimeout</c>, an idle timeout meant for short calls (YARP cuts a call
/// whose backend is silent for that long, answering 504);</item>
/// <item>the route's <c>Timeout</c>, the whole exchange's bound (ASP.NET Core request timeouts).</item>
/// </list>
/// A generation can be silent for a long time (a long prompt's prefill, a non-streamed answer) and still be healthy,
/// so on a route that declares a <c>Timeout</c> the idle timeout is raised to that timeout: the route's bound alone
/// applies. A WebSocket session's idle bound is <c>Gateway:Limits:WebSocketIdleTimeout</c>, enforced by the gateway
/// itself (<see cref="WebSocketIdleTimeout"/>: close 1001 on both sides), shorter or longer than the cluster's
/// activity timeout; YARP's activity timeout for the session is set just above it (<see cref="IdleMargin"/>).
/// </remarks>
internal sealed partial class ForwardStep(RequestDelegate next, Configuration.GatewayLimitsOptions limits, TimeProvider time, Telemetry.GatewayMetrics metrics, ILogger<ForwardStep> logger)
{
    // Per cluster model (YARP replaces it on every reload) and timeout, the same cluster with a longer idle timeout.
    private readonly ConditionalWeakTable<ClusterModel, ConcurrentDictionary<TimeSpan, ClusterModel>> _extended = [];

    public Task InvokeAsync(HttpContext context)
    {
        var exchange = context.GetExchange()!;
        var classification = exchange.Classification!;
        if (exchange.ResponseBody is { } body)
        {
            context.Features.Set(body(context.Features.Get<IHttpResponseBodyFeature>()!));
        }

        if (exchange.Upgrade is { } upgrade && context.Features.Get<IHttpUpgradeFeature>() is { } feature)
        {
            context.Features.Set(upgrade(feature));
        }

        var proxy = context.GetReverseProxyFeature();
        var longIdle = TimeSpan.Zero;
        if (classification.IsWebSocket)
        {
            longIdle = limits.WebSocketIdleTimeout;
            if (context.Features.Get<IHttpUpgradeFeature>() is { IsUpgradableRequest: true } websocket)
            {
                // The gateway closes an idle WebSocket itself, with a close frame on both sides; YARP's activity timeout
                // (which would cut it as a failure) is set above it, so this close always comes first.
                var idleTimeout = limits.WebSocketIdleTimeout;
                var route = classification.RouteId;
                context.Features.Set<IHttpUpgradeFeature>(new WebSocketIdleTimeout(websocket, idleTimeout, time, () =>
                {
                    metrics.WebSocketIdleClosed(route);
                    Log.WebSocketIdleClosed(logger, route, idleTimeout);
                }));
                longIdle = idleTimeout + IdleMargin(idleTimeout);
            }
        }
        else if (proxy.Route.Config.Timeout is { } routeTimeout && routeTimeout > TimeSpan.Zero && routeTimeout != Timeout.InfiniteTimeSpan)
        {
            longIdle = routeTimeout;
        }

        if (longIdle > TimeSpan.Zero)
        {
            var idle = proxy.Cluster.Config.HttpRequest?.ActivityTimeout ?? TimeSpan.FromSeconds(100);
            if (idle < longIdle && proxy is ReverseProxyFeature reverseProxy)
            {
                reverseProxy.Cluster = WithActivityTimeout(proxy.Cluster, longIdle);
            }
        }

        return next(context);
    }

    /// <summary>
    /// How far above the WebSocket idle timeout YARP's activity timeout is set: long enough for the gateway's close
    /// frames and the backend's answer to pass (each of which also resets YARP's timer), a tenth of the timeout, at
    /// least 2 seconds.
    /// </summary>
    internal static TimeSpan IdleMargin(TimeSpan idleTimeout) => TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(2).Ticks, idleTimeout.Ticks / 10));

    private ClusterModel WithActivityTimeout(ClusterModel cluster, TimeSpan activityTimeout) =>
        _extended.GetValue(cluster, static _ => new ConcurrentDictionary<TimeSpan, ClusterModel>())
            .GetOrAdd(activityTimeout, static (t, c) => new ClusterModel(
                c.Config with { HttpRequest = (c.Config.HttpRequest ?? ForwarderRequestConfig.Empty) with { ActivityTimeout = t } },
                c.HttpClient), cluster);
}

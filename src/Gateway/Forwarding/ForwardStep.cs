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
/// applies. A WebSocket session's idle bound is <c>Gateway:Limits:WebSocketIdleTimeout</c>.
/// </remarks>
internal sealed class ForwardStep(RequestDelegate next, Configuration.GatewayLimitsOptions limits)
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
        var longIdle = classification.IsWebSocket ? limits.WebSocketIdleTimeout
            : proxy.Route.Config.Timeout is { } routeTimeout && routeTimeout > TimeSpan.Zero && routeTimeout != Timeout.InfiniteTimeSpan ? routeTimeout
            : TimeSpan.Zero;
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

    private ClusterModel WithActivityTimeout(ClusterModel cluster, TimeSpan activityTimeout) =>
        _extended.GetValue(cluster, static _ => new ConcurrentDictionary<TimeSpan, ClusterModel>())
            .GetOrAdd(activityTimeout, static (t, c) => new ClusterModel(
                c.Config with { HttpRequest = (c.Config.HttpRequest ?? ForwarderRequestConfig.Empty) with { ActivityTimeout = t } },
                c.HttpClient), cluster);
}

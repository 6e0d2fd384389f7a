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
internal sealed partial class ForwardStep(RequestDelegate next, Configuration.GatewayLimitsOptions limits, TimeProvider time, Telemetry.GatewayMetrics metrics,
    ILogger<ForwardStep> logger, BackendConnections backends, Routing.ModelRouter router, Shaping.ShapingRuntime shaping,
    Shaping.ClusterAdmission admission, Configuration.ConfigurationGate gate)
{
    // Per cluster model (YARP replaces it on every reload) and timeout, the same cluster with a longer idle timeout.
    private readonly ConditionalWeakTable<ClusterModel, ConcurrentDictionary<TimeSpan, ClusterModel>> _extended = [];

    public Task InvokeAsync(HttpContext context)
    {
        var exchange = context.GetExchange()!;
        var classification = exchange.Classification!;
        if (classification.GenAiOperation is not null && gate.Current.Telemetry.GenAiMetrics)
        {
            // The GenAI metrics' tokens, response model and first token; with GenAiStreamUsage, a stream's usage too.
            exchange.MeterUsage(stripUsage: AskStreamUsage(exchange, classification));
        }

        if (exchange.ResponseBody is not null || exchange.UsageRequested)
        {
            var feature = context.Features.Get<IHttpResponseBodyFeature>()!;
            if (exchange.ResponseBody is { } body)
            {
                feature = body(feature);
            }

            // The usage meter sits innermost, next to the forwarder: what it strips no other filter sees.
            context.Features.Set(exchange.InstallUsageMeter(context, feature));
        }

        var proxy = context.GetReverseProxyFeature();
        var longIdle = TimeSpan.Zero;
        if (classification.IsWebSocket)
        {
            // The gateway closes an idle WebSocket itself, with a close frame on both sides; YARP's activity timeout
            // (which would cut it as a failure) is set above it, so this close always comes first.
            var idleTimeout = limits.WebSocketIdleTimeout;
            var route = classification.RouteId;
            exchange.FilterConnection(WebSocketIdleTimeout.Filter(idleTimeout, time, () =>
            {
                metrics.WebSocketIdleClosed(route);
                Log.WebSocketIdleClosed(logger, route, idleTimeout);
            }, exchange.MarkWebSocketClosed));
            ConnectionFilters.Install(context, exchange.Connection!);
            longIdle = idleTimeout + IdleMargin(idleTimeout);
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

        return classification.ClusterId is null ? next(context)
            : classification.Model is null ? ForwardAsync(context, classification, classification.ClusterId)
            : ForwardWithFallbacksAsync(context, classification);
    }

    /// <summary>
    /// With <c>Gateway:Telemetry:GenAiStreamUsage</c>: asks an OpenAI stream whose client did not ask for its usage to
    /// report it (<c>stream_options.include_usage</c>, the body rewritten as the token step does), so the GenAI token
    /// metrics count it; the usage chunk is then removed from what the client sees. Only when some step already read the
    /// body (models configured, a token policy, an <c>InferenceAware</c> cluster) and no token policy asked already.
    /// </summary>
    /// <returns>Whether the usage the client did not ask for must be stripped.</returns>
    private bool AskStreamUsage(ExchangeContext exchange, Classification classification)
    {
        if (!gate.Current.Telemetry.GenAiStreamUsage || exchange.StripsUsage || classification.IsGrpc
            || classification.Llm is not { Valid: true, Stream: true, IncludeUsage: false }
            || (classification.ForwardedBody ?? classification.Body) is not { Length: > 0 } body)
        {
            return false;
        }

        classification.ReplaceBody(Shaping.Tokens.LlmRequest.WithIncludeUsage(body.Span));
        return true;
    }

    /// <summary>
    /// Forwards to <paramref name="cluster"/>; when the chosen destination refused the connection (nothing reached it)
    /// and the cluster has another, the request is sent once more to another destination, with the same body. A
    /// replica that went away is then invisible to clients until passive health takes it out.
    /// </summary>
    private async Task ForwardAsync(HttpContext context, Classification classification, string cluster)
    {
        // The destinations before load balancing narrows them to the one it picks.
        var candidates = context.GetReverseProxyFeature().AvailableDestinations;
        await ForwardCountedAsync(context, cluster);
        if (context.Response.HasStarted || context.Features.Get<IForwarderErrorFeature>() is not { Error: ForwarderError.Request } error
            || !ConnectionRefused(error.Exception) || !Replayable(context, classification)
            || context.GetReverseProxyFeature() is not Yarp.ReverseProxy.Model.IReverseProxyFeature proxy || proxy.ProxiedDestination is not { } failed)
        {
            return;
        }

        var others = new List<Yarp.ReverseProxy.Model.DestinationState>(candidates.Count);
        foreach (var destination in candidates)
        {
            if (destination != failed)
            {
                others.Add(destination);
            }
        }

        if (others.Count == 0)
        {
            return;
        }

        proxy.AvailableDestinations = others;
        Reset(context, classification);
        await ForwardCountedAsync(context, cluster);
    }

    private static bool ConnectionRefused(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is System.Net.Sockets.SocketException { SocketErrorCode: System.Net.Sockets.SocketError.ConnectionRefused })
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Undoes a forward that failed before any answer: no error, a fresh response, the body from its start.</summary>
    private static void Reset(HttpContext context, Classification classification)
    {
        context.Features.Set<IForwarderErrorFeature>(null);
        context.Response.Clear();
        context.Response.StatusCode = StatusCodes.Status200OK;
        if (classification.ForwardedBody is { } sent)
        {
            classification.ReplaceBody(sent.ToArray()); // a fresh stream of the same bytes, read from the start
        }
        else if (classification.Body is { Length: > 0 } body)
        {
            classification.ReplaceBody(body.ToArray());
        }
    }

    private async Task ForwardCountedAsync(HttpContext context, string cluster)
    {
        backends.Stream(cluster, 1);
        try
        {
            await next(context);
        }
        finally
        {
            backends.Stream(cluster, -1);
        }
    }

    /// <summary>
    /// Forwards a request routed by model; when forwarding fails before the backend answered (no destination, or the
    /// connection could not be made) and nothing was sent to the client, the requested model's next fallback is tried
    /// with the same body (never after a byte of an answer was sent). A fallback on another cluster is admitted there
    /// first (<see cref="Shaping.ClusterAdmission"/>: its in-flight cap, queue and breaker count the request, and a
    /// refusal is answered as the admission step would); the failed cluster's breaker is told of its failure (502).
    /// The first cluster's lease is held until the exchange completes.
    /// </summary>
    private async Task ForwardWithFallbacksAsync(HttpContext context, Classification classification)
    {
        await ForwardAsync(context, classification, classification.ClusterId!);
        if (classification.RequestedRoute is not { } asked)
        {
            return;
        }

        // The fallbacks after the model in use (all of them when the asked model itself was used).
        var remaining = asked == classification.Model ? [.. asked.Fallbacks] : asked.Fallbacks.SkipWhile(f => f != classification.Model).Skip(1).ToArray();
        foreach (var fallback in remaining)
        {
            if (context.Response.HasStarted || context.Features.Get<IForwarderErrorFeature>() is not { } error || !FailedBeforeAnswer(error)
                || !Replayable(context, classification))
            {
                return;
            }

            var clusterId = fallback.ClusterFor(classification.IsGrpc) ?? classification.Route.ClusterId;
            if (!router.MoveTo(context, clusterId))
            {
                continue;
            }

            Reset(context, classification);
            var exchange = context.GetExchange()!;
            if (!string.Equals(clusterId, classification.ClusterId, StringComparison.OrdinalIgnoreCase))
            {
                // The cluster that failed is judged by its own failure, not by the fallback's answer.
                exchange.Admission?.Ticket?.Report(StatusCodes.Status502BadGateway);
                if (clusterId is not null && shaping.Current.Clusters.TryGetValue(clusterId, out var fallbackShaping)
                    && await admission.AdmitAsync(context, exchange, fallbackShaping) is null)
                {
                    return; // the fallback's admission refused it (its answer is set), or the client left while it waited
                }
            }

            Routing.ModelRouter.Rewrite(context, classification, fallback.BackendName, classification.Llm);
            classification.FallBack(fallback, clusterId);
            await ForwardAsync(context, classification, clusterId!);
        }
    }

    private static bool FailedBeforeAnswer(IForwarderErrorFeature error) =>
        error.Error == ForwarderError.NoAvailableDestinations
        || (error.Error == ForwarderError.Request && !ForwarderErrors.IsClientSide(error.Error, error.Exception));

    /// <summary>Whether the request can be sent again: it has no body, or its whole body was read (and is kept).</summary>
    private static bool Replayable(HttpContext context, Classification classification) =>
        context.Request.ContentLength is 0 || classification.ForwardedBody is not null || classification.Body is { Length: > 0 }
        || (context.Request.ContentLength is null && !context.Request.Headers.ContainsKey("Transfer-Encoding"));

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

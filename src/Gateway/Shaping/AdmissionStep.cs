using Contracts.Wire;
using Gateway.Exchange;
using Gateway.Shaping.Admission;
using Grpc.Core;

namespace Gateway.Shaping;

/// <summary>
/// The admission step, last before forwarding: the cluster's circuit breaker and in-flight cap
/// (<see cref="RoutePlan.Admission"/>), decided by <see cref="ClusterAdmission"/>. A refused exchange ends here; an
/// admitted one is forwarded holding its lease (<see cref="ExchangeContext.Admission"/>) until it completes.
/// </summary>
internal sealed class AdmissionStep(RequestDelegate next, ClusterAdmission admission)
{
    public Task InvokeAsync(HttpContext context)
    {
        var exchange = context.GetExchange()!;
        var cluster = exchange.Classification!.Plan.Admission;
        return cluster is null ? next(context) : AdmitAsync(context, exchange, cluster);
    }

    private async Task AdmitAsync(HttpContext context, ExchangeContext exchange, ClusterShaping cluster)
    {
        if (await admission.AdmitAsync(context, exchange, cluster) is null)
        {
            return; // refused (the answer is set) or the client went away while waiting
        }

        await next(context);
    }
}

/// <summary>
/// Admits an exchange to a cluster: its circuit breaker and in-flight cap (<see cref="ClusterShaping"/>). Used by
/// <see cref="AdmissionStep"/> for the cluster the request was routed to, and by <c>ForwardStep</c> for a model's
/// fallback cluster when forwarding to the first failed before any answer (the fallback's cap counts that request
/// too; litellm#1555 is the same bug in another router: a fallback's usage counted against the original model).
/// <list type="number">
/// <item>While the circuit is open within its break, the request is refused at once (503 <c>circuit_open</c>) without
/// queueing; after the break Polly lets one trial through (half-open), whose start decides.</item>
/// <item>The in-flight cap with its priority queue and adaptive limit (<see cref="AdmissionController"/>): a full queue
/// or a wait past its timeout is refused with 503 and <c>Retry-After</c> (gRPC UNAVAILABLE, WebSocket close 1013),
/// naming <c>admission:CLUSTER</c>.</item>
/// <item>The admitted exchange holds its lease until it completes (<see cref="AdmissionRelease"/>); its first byte feeds
/// the adaptive limit, a failure's latency does not.</item>
/// </list>
/// </summary>
internal sealed class ClusterAdmission(ShapingMetrics metrics, RefusalLog refusals, ShapingRuntime runtime)
{
    private static readonly Func<object, Task> s_responseStarted = static state =>
    {
        var release = (AdmissionRelease)state;
        release.Lease.MarkFirstByte();
        release.Ticket?.Report(AdmissionRelease.BreakerStatus(release.Context));
        return Task.CompletedTask;
    };

    /// <summary>
    /// Admits the exchange to <paramref name="cluster"/>, or refuses it (<see cref="ExchangeContext.Refuse"/>, counted and
    /// logged as a refusal of <c>admission:CLUSTER</c>).
    /// </summary>
    /// <returns>
    /// The admitted exchange's release, registered to run at completion and set as <see cref="ExchangeContext.Admission"/>;
    /// null when refused or when the client went away while it waited.
    /// </returns>
    public async ValueTask<AdmissionRelease?> AdmitAsync(HttpContext context, ExchangeContext exchange, ClusterShaping cluster)
    {
        var classification = exchange.Classification!;
        var options = runtime.Current.Options;
        var aborted = exchange.ClientAborted;
        var controller = cluster.Controller;
        if (cluster.Breaker is { } breaker && breaker.IsBreaking(out var breakLeft))
        {
            // Open and within its break: refused before it queues. After the break, Polly decides (half-open trial).
            exchange.Refuse(CircuitOpen(exchange, cluster, options, breakLeft));
            return null;
        }

        var priority = Priority(context, classification, controller.Settings, options);
        var result = await controller.EnterAsync(classification.ClientKey, priority, aborted);
        exchange.QueueWait = (exchange.QueueWait ?? TimeSpan.Zero) + result.Waited; // a fallback cluster's queue adds to the first's
        if (result.Lease is not { } lease)
        {
            metrics.Admission(controller.ClusterId, "refused", result.Reason, TimeSpan.Zero);
            if (result.Reason == "cancelled")
            {
                return null; // the client went away while waiting
            }

            refusals.Refused(GatewayLimits.Admission(controller.ClusterId), result.Reason!, classification.ClientKey, shadow: false, options.RefusalLogInterval);
            exchange.Refuse(new GatewayAnswer(StatusCodes.Status503ServiceUnavailable, StatusCode.Unavailable, GatewayErrorTypes.Overloaded, result.Reason!,
                $"Cluster '{controller.ClusterId}' is at capacity ({controller.InFlight} in flight, {controller.Queued} waiting): {result.Reason!.Replace('_', ' ')}.",
                result.RetryAfter, GatewayLimits.Admission(controller.ClusterId)));
            return null;
        }

        IDisposable? fleetLease = null;
        if (cluster.Fleet is { } fleet)
        {
            // The cap across every gateway sharing the Redis: one lease per exchange, renewed while it lives.
            var decision = await fleet.AcquireAsync("*", 1, aborted);
            if (!decision.Admitted)
            {
                lease.Discard();
                lease.Dispose();
                metrics.Admission(controller.ClusterId, "refused", "fleet_capacity", TimeSpan.Zero);
                refusals.Refused($"admission:{controller.ClusterId}", "fleet_capacity", classification.ClientKey, shadow: false, options.RefusalLogInterval);
                exchange.Refuse(new GatewayAnswer(StatusCodes.Status503ServiceUnavailable, StatusCode.Unavailable, "overloaded", "fleet_capacity",
                    decision.Reason == "redis_unavailable"
                        ? $"Cluster '{controller.ClusterId}' counts its in-flight requests fleet-wide and Redis is unavailable."
                        : $"Cluster '{controller.ClusterId}' is at its fleet-wide capacity ({cluster.Options.FleetMaxInFlight} in flight across the gateways sharing Redis).",
                    decision.RetryAfter ?? TimeSpan.FromSeconds(1), $"admission:{controller.ClusterId}"));
                return null;
            }

            fleetLease = decision.Lease;
        }

        BreakerTicket? ticket = null;
        if (cluster.Breaker is { } b)
        {
            (ticket, var retryAfter) = await b.TryPassAsync(aborted);
            if (ticket is null)
            {
                // Polly refused it (isolated, still open, or half-open with its one trial in flight): nothing was sent.
                fleetLease?.Dispose();
                lease.Discard();
                lease.Dispose();
                exchange.Refuse(CircuitOpen(exchange, cluster, options, retryAfter ?? TimeSpan.Zero));
                return null;
            }
        }

        metrics.Admission(controller.ClusterId, "admitted", null, result.Waited);
        var release = new AdmissionRelease(context, lease, ticket, fleetLease);
        exchange.OnCompleted(release);
        context.Response.OnStarting(s_responseStarted, release);
        exchange.Admission = release;
        return release;
    }

    private GatewayAnswer CircuitOpen(ExchangeContext exchange, ClusterShaping cluster, ShapingOptions options, TimeSpan retryAfter)
    {
        var id = cluster.Controller.ClusterId;
        metrics.Admission(id, "refused", GatewayErrorCodes.CircuitOpen, TimeSpan.Zero);
        refusals.Refused(GatewayLimits.Admission(id), GatewayErrorCodes.CircuitOpen, exchange.Classification!.ClientKey, shadow: false, options.RefusalLogInterval);
        return new GatewayAnswer(StatusCodes.Status503ServiceUnavailable, StatusCode.Unavailable, GatewayErrorTypes.Overloaded, GatewayErrorCodes.CircuitOpen,
            $"The circuit breaker of cluster '{id}' is open after repeated backend failures; a trial request is let through once its break is over.",
            retryAfter > TimeSpan.Zero ? retryAfter : cluster.Options.CircuitBreaker.BreakDuration, GatewayLimits.Admission(id));
    }

    private static int Priority(HttpContext context, Classification classification, AdmissionSettings settings, ShapingOptions options)
    {
        if (context.Request.Headers[settings.Options.PriorityHeader] is { Count: > 0 } header && settings.ClassIndex(header[0]) is { } fromHeader)
        {
            return fromHeader;
        }

        if (options.KeyPriorities.TryGetValue(classification.ClientKey, out var tier) && settings.ClassIndex(tier) is { } fromKey)
        {
            return fromKey;
        }

        return settings.DefaultClass;
    }
}

/// <summary>
/// An admitted exchange's lease and breaker ticket, released when it completes: a 5xx or a client that went away feeds
/// no latency sample to the adaptive limit, and the breaker gets its verdict if the response never started.
/// </summary>
internal sealed class AdmissionRelease(HttpContext context, AdmissionLease lease, BreakerTicket? ticket, IDisposable? fleetLease = null) : IExchangeFinalizer
{
    public HttpContext Context { get; } = context;

    public AdmissionLease Lease { get; } = lease;

    public BreakerTicket? Ticket { get; } = ticket;

    public async ValueTask CompleteAsync(ExchangeResult result)
    {
        if (result.Status >= 500 || result.Outcome == ExchangeOutcome.ClientAbort)
        {
            Lease.Discard(); // a failure's latency says nothing about the backend's queue
        }

        Lease.Dispose();
        fleetLease?.Dispose();
        if (Ticket is { } t)
        {
            await t.CompleteAsync(JudgedStatus(result));
        }
    }

    /// <summary>
    /// The status the circuit breaker judges an exchange by (5xx: the backend failed). A failure on the client's side is
    /// never the backend's: a client that went away counts as 499, a request that could not be forwarded as the client
    /// sent it (<see cref="Forwarding.ForwarderErrors.IsClientSide"/>) as 400, whatever status YARP set for it.
    /// </summary>
    internal static int BreakerStatus(HttpContext context)
    {
        if (context.GetExchange() is { IsClientAbort: true, WebSocketClosed: false })
        {
            return ExchangeCompletion.ClientClosedRequest;
        }

        if (context.Features.Get<Yarp.ReverseProxy.Forwarder.IForwarderErrorFeature>() is { } error && Forwarding.ForwarderErrors.IsClientSide(error.Error, error.Exception))
        {
            return StatusCodes.Status400BadRequest;
        }

        return context.Response.StatusCode;
    }

    private static int JudgedStatus(ExchangeResult result) => result.Outcome switch
    {
        ExchangeOutcome.ClientAbort => ExchangeCompletion.ClientClosedRequest,
        ExchangeOutcome.ClientError => StatusCodes.Status400BadRequest,
        ExchangeOutcome.Timeout => StatusCodes.Status504GatewayTimeout,
        _ => result.Status,
    };
}

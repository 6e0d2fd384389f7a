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
        var classification = exchange.Classification!;
        var cluster = classification.Plan.Admission;
        if (cluster is null)
        {
            if (classification.Tenant is not null)
            {
                ClusterAdmission.MeterUsage(context, exchange); // the tenant's token counts
            }

            return next(context);
        }

        return AdmitAsync(context, exchange, cluster);
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
/// the adaptive limit, a failure's latency does not; its output tokens are charged to its key's fair share as they
/// stream (<see cref="ExchangeContext.OutputTokens"/>), corrected to the usage reported at completion.</item>
/// </list>
/// The queue's key is the tenant (<c>tenant:NAME</c>, with the tenant's <c>Weight</c>) when the exchange has one, else the
/// client key (weight 1); its prompt tokens are charged when it is admitted. Its class is the <c>x-priority</c> header's,
/// capped at the tenant's own <c>Priority</c> (a normal tenant asking for high gets normal; asking for low gets low);
/// without a tenant, the header's, else <c>Shaping:KeyPriorities</c>, else the default class. The time it waited is put on
/// <see cref="ExchangeContext.QueueWait"/> and counted per tenant (<see cref="Tenants.TenantMetrics"/>).
/// </summary>
internal sealed class ClusterAdmission(ShapingMetrics metrics, RefusalLog refusals, ShapingRuntime runtime, Tenants.TenantMetrics tenantMetrics)
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
        var tenant = classification.Tenant;
        var key = tenant is null ? classification.ClientKey : runtime.Current.TenantFor(tenant)?.FairShareKey ?? "tenant:" + tenant.Name;
        var llm = classification.Llm;
        if (llm is null && !classification.IsWebSocket && !classification.IsGrpc)
        {
            // The prompt's tokens are the fair share's charge at admission (read once; a body that is not JSON counts 0).
            // gRPC bodies are read only by the token step (a client stream is not waited for here): their output counts.
            llm = await classification.GetLlmRequestAsync(options.MaxInspectBytes, options.DefaultMaxTokens, aborted);
        }

        var input = llm is { Valid: true } ? llm.PromptTokens : 0;
        MeterUsage(context, exchange);
        var result = await controller.EnterAsync(new AdmissionRequest(key, priority, tenant?.Options.Weight ?? 1.0, input), aborted);
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
                $"Cluster '{controller.ClusterId}' is at capacity ({controller.InFlight} in flight, {controller.Queued} waiting{(controller.HeldBack is var held and > 0 ? $", {held} held back for callers under their fair share (FairShareHeadroom)" : "")}): {result.Reason!.Replace('_', ' ')}.",
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

        metrics.Admission(controller.ClusterId, "admitted", result.Aged ? "aged" : null, result.Waited);
        if (tenant is not null)
        {
            tenantMetrics.QueueWait(tenant.Name, result.Waited);
        }

        exchange.OutputTokens = lease; // output tokens are charged to the fair share as they stream
        var release = new AdmissionRelease(context, lease, ticket, fleetLease);
        exchange.OnCompleted(release);
        context.Response.OnStarting(s_responseStarted, release);
        exchange.Admission = release;
        return release;
    }

    /// <summary>
    /// Asks for the response's usage to be metered (<see cref="ExchangeContext.MeterUsage"/>; the token step may have asked
    /// already): the fair share charges output tokens as they stream, the tenant metrics count them.
    /// </summary>
    internal static void MeterUsage(HttpContext context, ExchangeContext exchange)
    {
        if (!exchange.Classification!.IsWebSocket)
        {
            exchange.MeterUsage(stripUsage: false);
        }
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

    /// <summary>
    /// The class of a request: the priority header's (a class name), capped at the tenant's own <c>Priority</c> when there
    /// is a tenant; without a tenant the header's, else <c>Shaping:KeyPriorities</c> of the client key, else the default.
    /// </summary>
    internal static int Priority(HttpContext context, Classification classification, AdmissionSettings settings, ShapingOptions options) =>
        PriorityOf(context.Request.Headers[settings.Options.PriorityHeader] is { Count: > 0 } header ? header[0] : null,
            classification.Tenant, classification.Tenant is null ? classification.ClientKey : null, settings, options);

    /// <summary>The class index of a request (see <see cref="Priority"/>); pure.</summary>
    /// <param name="header">The priority header's value, or null.</param>
    /// <param name="tenant">The exchange's tenant, or null.</param>
    /// <param name="clientKey">The client key (for <c>Shaping:KeyPriorities</c>, read without a tenant), or null.</param>
    /// <param name="settings">The cluster's admission settings.</param>
    /// <param name="options">The shaping options.</param>
    internal static int PriorityOf(string? header, Tenants.Tenant? tenant, string? clientKey, AdmissionSettings settings, ShapingOptions options)
    {
        var requested = settings.ClassIndex(header);
        if (tenant is not null)
        {
            var own = settings.ClassIndex(tenant.Options.Priority) ?? settings.DefaultClass;
            return requested is { } r ? Math.Max(r, own) : own; // a higher index is less urgent: never above the tenant's own
        }

        if (requested is { } fromHeader)
        {
            return fromHeader;
        }

        if (clientKey is not null && options.KeyPriorities.TryGetValue(clientKey, out var tier) && settings.ClassIndex(tier) is { } fromKey)
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

        if (Context.GetExchange()?.Usage is { } usage)
        {
            // The output it generated, as the backend reported it (else the chunks delivered; completion finished the
            // meter before the finalizers), corrects its fair-share charge.
            Lease.ReportOutputTokens(usage.CompletionTokens ?? usage.Delivered);
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
        ExchangeOutcome.BackendError when result.Status < 500 => StatusCodes.Status502BadGateway, // failed after the response started
        _ => result.Status,
    };
}

using Gateway.Listeners;
using Microsoft.AspNetCore.Connections.Features;

namespace Gateway.Exchange;

/// <summary>
/// One small object per request that each step of the gateway's request path fills in (listener, route, cluster,
/// timings, outcome), stored as an <see cref="HttpContext"/> feature. It is created by
/// <see cref="ExchangeMiddleware"/> before routing and read by logging, metrics and later steps.
/// </summary>
internal sealed class ExchangeContext
{
    /// <summary>The listener the connection arrived on.</summary>
    public ListenerName Listener { get; init; }

    /// <summary>Monotonic timestamp (<see cref="TimeProvider.GetTimestamp"/>) when the gateway began the exchange.</summary>
    public long StartTimestamp { get; init; }

    /// <summary>
    /// The connection's own abort token, captured before any middleware (request timeouts) links it to another
    /// token: it fires only when the client went away, which is how a client abort (499) is told from a timeout.
    /// </summary>
    public CancellationToken ClientAborted { get; init; }

    /// <summary>The YARP route that matched, or null when none did.</summary>
    public string? RouteId { get; set; }

    /// <summary>The cluster the route forwards to, or null.</summary>
    public string? ClusterId { get; set; }

    /// <summary>The session id, once resolved (<see cref="Recording.SessionResolver"/>); null until then.</summary>
    public string? SessionId { get; set; }

    /// <summary>True when <see cref="SessionId"/> was generated because no configured source had one.</summary>
    public bool SessionGenerated { get; set; }

    /// <summary>The client key (<see cref="ClientKey"/>), once resolved.</summary>
    public string? ClientKey { get; set; }

    /// <summary>The request's body as the client sent it, once read by <see cref="RequestBody"/> (empty when too large); null until read.</summary>
    public ReadOnlyMemory<byte>? JsonBody { get; set; }

    /// <summary>True when a step replaced the request body that is forwarded (the recording keeps <see cref="JsonBody"/>, what the client sent).</summary>
    public bool RequestBodyReplaced { get; set; }

    /// <summary>Wall-clock start of the exchange.</summary>
    public DateTimeOffset StartTime { get; init; }

    /// <summary>The clock of <see cref="StartTimestamp"/>.</summary>
    public required TimeProvider Time { get; init; }

    /// <summary>Monotonic timestamp when the response started (headers and first body bytes sent); 0 until then.</summary>
    public long ResponseStarted { get; set; }

    /// <summary>True when the route's timeout ended the exchange (the client got 504 or a reset stream).</summary>
    public bool TimedOut { get; set; }

    /// <summary>True when the client went away before the exchange completed.</summary>
    public bool IsClientAbort => ClientAborted.IsCancellationRequested;
}

/// <summary>Access to the <see cref="ExchangeContext"/> of a request.</summary>
internal static class ExchangeContextExtensions
{
    /// <summary>The exchange of this request, or null outside the gateway's pipeline.</summary>
    public static ExchangeContext? GetExchange(this HttpContext context) => context.Features.Get<ExchangeContext>();

    /// <summary>The listener this request arrived on, from the connection's items (set when the connection was accepted).</summary>
    public static ListenerName? GetListener(this HttpContext context) =>
        context.Features.Get<IConnectionItemsFeature>()?.Items.TryGetValue(ListenerTag.Key, out var value) == true
            ? (ListenerName)value!
            : null;
}

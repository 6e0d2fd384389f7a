using Gateway.Recording;
using Gateway.Shaping;

namespace Gateway.Exchange;

/// <summary>
/// The first step of the proxy pipeline, right after routing: gives the exchange its <see cref="Classification"/>
/// (listener, protocol, route, cluster, the route's shaping plan; the client key, session and LLM request on demand),
/// which every later step reads. A request whose headers cannot be forwarded as sent (a value with characters outside
/// ASCII, which the forwarder sends as ASCII only) ends here with 400 <c>invalid_header</c>, before anything is counted
/// against a limit or the backend.
/// </summary>
internal sealed class ClassifyStep(RequestDelegate next, ShapingRuntime shaping, SessionResolver sessions)
{
    public Task InvokeAsync(HttpContext context)
    {
        var exchange = context.GetExchange()!;
        var route = context.GetReverseProxyFeature().Route.Config;
        exchange.Classify(new Classification(context, exchange.Listener, ExchangeProtocols.Of(context), route, shaping.Current.PlanFor(route), sessions));
        if (UnforwardableHeader(context.Request.Headers) is { } header)
        {
            exchange.Refuse(GatewayAnswer.BadRequest("invalid_header",
                $"The value of request header '{header}' has non-ASCII characters, which cannot be forwarded; encode it (for example percent-encoding, RFC 8187)."));
            return Task.CompletedTask;
        }

        return next(context);
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
}

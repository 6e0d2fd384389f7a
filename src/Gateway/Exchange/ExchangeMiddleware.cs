using Gateway.Listeners;
using Gateway.Telemetry;

namespace Gateway.Exchange;

/// <summary>
/// The first step of every request, before routing: creates the <see cref="ExchangeContext"/>, and when the request
/// path returns, whatever happened, hands it to <see cref="ExchangeCompletion"/>, the one owner of the outcome.
/// </summary>
/// <remarks>
/// The request header limits (<see cref="RequestHeaderLimit"/>) are checked here, before routing: a request over them
/// is answered 431 by completion and goes no further.
/// </remarks>
internal sealed class ExchangeMiddleware(RequestDelegate next, GatewayMetrics metrics, ExchangeCompletion completion, RequestHeaderLimit headerLimit, TimeProvider time)
{
    private static readonly Func<object, Task> s_responseStarted = static state =>
    {
        var exchange = (ExchangeContext)state;
        exchange.ResponseStarted = exchange.Time.GetTimestamp();
        return Task.CompletedTask;
    };

    public async Task InvokeAsync(HttpContext context)
    {
        var listener = context.GetListener() ?? Listeners.ListenerName.Http;
        var exchange = new ExchangeContext
        {
            Listener = listener,
            StartTimestamp = time.GetTimestamp(),
            StartTime = time.GetUtcNow(),
            ClientAborted = context.RequestAborted,
            Time = time,
        };
        context.Features.Set(exchange);
        context.Response.OnStarting(s_responseStarted, exchange);
        var listenerTag = listener.Tag();
        metrics.RequestStarted(listenerTag);

        try
        {
            if (headerLimit.Check(context.Request.Headers) is { } tooLarge)
            {
                exchange.Refuse(tooLarge);
            }
            else
            {
                await next(context);
            }
        }
        catch (Exception ex) when (!exchange.IsClientAbort)
        {
            // A bug, never an expected outcome: completion answers 500 (or cuts a started response), logs and records it.
            exchange.Fail(ex);
        }
        finally
        {
            await completion.CompleteAsync(context, exchange, listenerTag);
        }
    }
}

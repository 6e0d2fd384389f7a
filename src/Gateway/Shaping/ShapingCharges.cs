using Contracts.Wire;
using Gateway.Exchange;
using Gateway.Shaping.Policies;

namespace Gateway.Shaping;

/// <summary>
/// What the shaping steps took from the route's request-counted policies for one exchange, and the figures of its
/// <c>x-ratelimit-*</c> headers. One per shaped exchange (<see cref="For"/>), shared by <see cref="RateLimitStep"/> and
/// <see cref="TokenStep"/>.
/// <list type="number">
/// <item>No double counting: a request refused by a later policy, by admission or by the circuit breaker takes nothing
/// from the earlier policies. The step whose policy refuses gives the earlier charges back at once
/// (<see cref="RefundAsync"/>); when the exchange ends answered by the gateway itself (<see cref="ExchangeOutcome.Answered"/>:
/// a later step refused it), whatever is still held is given back. A refusing policy charged nothing, so it refunds
/// nothing. Token reservations are reconciled by <see cref="TokenCharges"/> (an answered exchange costs 0).</item>
/// <item>Headers are written when the response starts, so that they hold on the gateway's own answers too (which clear
/// the response first) and describe what is left after the refunds that will follow: a refusal shows its policy with
/// remaining 0 and the reset counting down to its Retry-After; an exchange the gateway answered shows its charges given
/// back; a backend's error (4xx/5xx, whose token reservation is refunded) shows the tokens given back, never the stale
/// figure from before.</item>
/// </list>
/// </summary>
internal sealed class ShapingCharges : IExchangeFinalizer
{
    private static readonly Func<object, Task> s_writeHeaders = static state =>
    {
        ((ShapingCharges)state).WriteHeaders();
        return Task.CompletedTask;
    };

    private readonly HttpContext _context;
    private readonly ExchangeContext _exchange;
    private List<PolicyCharge>? _charges;

    private ShapingCharges(HttpContext context, ExchangeContext exchange)
    {
        _context = context;
        _exchange = exchange;
    }

    /// <summary>The tightest request-counted figures of the policies that admitted the request.</summary>
    public RateInfo? Requests { get; set; }

    /// <summary>The tightest token figures of the policies that admitted the request.</summary>
    public RateInfo? Tokens { get; set; }

    /// <summary>Tokens reserved on each token policy (the estimate).</summary>
    public long TokensReserved { get; set; }

    /// <summary>The refusing policy's figures (remaining 0) and whether it counts tokens.</summary>
    public (bool CountsTokens, RateInfo Info)? Refusal { get; set; }

    /// <summary>The exchange's charges, created and registered (finalizer, header writer) on first use.</summary>
    public static ShapingCharges For(HttpContext context, ExchangeContext exchange)
    {
        if (context.Features.Get<ShapingCharges>() is { } existing)
        {
            return existing;
        }

        var charges = new ShapingCharges(context, exchange);
        context.Features.Set(charges);
        exchange.OnCompleted(charges);
        context.Response.OnStarting(s_writeHeaders, charges);
        return charges;
    }

    /// <summary>Records a charge to give back if the request is refused later.</summary>
    public void Add(PolicyCharge charge) => (_charges ??= new List<PolicyCharge>(2)).Add(charge);

    /// <summary>Gives every charge held back (once).</summary>
    public async ValueTask RefundAsync()
    {
        var charges = Interlocked.Exchange(ref _charges, null);
        if (charges is null)
        {
            return;
        }

        foreach (var charge in charges)
        {
            await charge.Owner.RefundAsync(charge, CancellationToken.None);
        }
    }

    public ValueTask CompleteAsync(ExchangeResult result) =>
        result.Outcome == ExchangeOutcome.Answered ? RefundAsync() : ValueTask.CompletedTask;

    private void WriteHeaders()
    {
        var requests = Requests;
        var tokens = Tokens;
        if (_exchange.Answer is not null)
        {
            // Refused here (by a later policy, admission, the breaker): everything charged is given back.
            requests = Plus(requests, 1);
            tokens = Plus(tokens, TokensReserved);
        }
        else if (_context.Response.StatusCode >= 400)
        {
            tokens = Plus(tokens, TokensReserved); // the backend refused it: the reservation is refunded at completion
        }

        if (Refusal is { } refusal)
        {
            if (refusal.CountsTokens)
            {
                tokens = refusal.Info;
            }
            else
            {
                requests = refusal.Info;
            }
        }

        var headers = _context.Response.Headers;
        RateLimitHeaders.Set(headers, requests, GatewayHeaders.RateLimitUnitRequests);
        RateLimitHeaders.Set(headers, tokens, GatewayHeaders.RateLimitUnitTokens);
    }

    private static RateInfo? Plus(RateInfo? info, long back) =>
        info is { } i ? i with { Remaining = Math.Min(i.Limit, i.Remaining + back) } : null;
}

using Contracts.Recording;
using Contracts.Wire;
using Gateway.Exchange;
using Gateway.Shaping.Policies;
using Gateway.Shaping.Tokens;

namespace Gateway.Shaping;

/// <summary>
/// The token-accounting step: the route's policies counted in tokens (<see cref="RoutePlan.TokenPolicies"/>), then the
/// tenant's own (<c>tenant:NAME:tokens</c>, <see cref="Tenants.TenantShaping.TokenPolicies"/>) reserve
/// the request's estimate (prompt tokens plus <c>max_tokens</c>) up front, in order, each on its partition; a refusal
/// ends the request path with 429 naming the policy. When the exchange completes, each charge is reconciled with what
/// it really cost (<see cref="TokenCharges"/>): the usage the backend reported (asked for on streams when the client
/// did not, and then removed from what the client sees), or for a stream cut short the prompt plus the chunks
/// delivered, or nothing for a request the backend refused or failed or the gateway answered; usage above the
/// reservation is charged too (debt). An estimate above a policy's whole budget is refused at once with
/// <c>request_too_large</c> and no Retry-After. Responses carry <c>x-ratelimit-*-tokens</c> headers
/// (<see cref="ShapingCharges"/>), and the record the charge per policy (<see cref="RecordedTokenCharge"/>).
/// </summary>
internal sealed class TokenStep(RequestDelegate next, ShapingMetrics metrics, RefusalLog refusals, ShapingRuntime runtime)
{
    public Task InvokeAsync(HttpContext context)
    {
        var exchange = context.GetExchange()!;
        var classification = exchange.Classification!;
        var policies = classification.Plan.TokenPolicies;
        var tenantPolicies = classification.Tenant is null ? [] : runtime.Current.TenantFor(classification.Tenant)?.TokenPolicies ?? [];
        return policies.Length == 0 && tenantPolicies.Length == 0 ? next(context)
            : ChargeAsync(context, exchange, classification, tenantPolicies.Length == 0 ? policies : [.. policies, .. tenantPolicies]);
    }

    private async Task ChargeAsync(HttpContext context, ExchangeContext exchange, Classification classification, ShapingPolicy[] policies)
    {
        var aborted = exchange.ClientAborted;
        var options = runtime.Current.Options;
        var llm = await classification.GetLlmRequestAsync(options.MaxInspectBytes, options.DefaultMaxTokens, aborted);
        if (llm.Undecodable)
        {
            // Its prompt cannot be counted; refused before any charge, whatever the backend would make of it.
            exchange.Refuse(GatewayAnswer.BadRequest(GatewayErrorCodes.InvalidJson,
                "The request body is not valid JSON text: a string holds bytes that are not UTF-8 or a lone surrogate escape (\\ud800 to \\udfff)."));
            return;
        }

        var cost = llm.Estimate;
        var shaping = ShapingCharges.For(context, exchange);
        TokenCharges? charges = null;
        RateInfo? tightest = null;
        foreach (var policy in policies)
        {
            if (policy.Partition.NeedsSession)
            {
                await classification.GetSessionIdAsync(aborted);
            }

            var partition = policy.Partition.Of(context, classification);
            var decision = await policy.AcquireAsync(partition, cost, aborted);
            if (!decision.Admitted)
            {
                if (ShapingAnswers.Refused(metrics, refusals, options, policy, partition, decision, cost) is { } answer)
                {
                    // The request policies' permits go back now; the token reservations made so far when the exchange
                    // completes (answered by the gateway: it cost nothing).
                    await shaping.RefundAsync();
                    shaping.Tokens = tightest;
                    shaping.TokensReserved = charges is null ? 0 : cost;
                    if (decision.Info is { } info && decision.Reason != GatewayErrorCodes.RequestTooLarge)
                    {
                        // (Too large for the budget: its figures say nothing about when to come back.)
                        shaping.Refusal = (true, info with { Remaining = 0 });
                    }

                    exchange.Refuse(answer);
                    return;
                }

                continue; // a shadow policy
            }

            metrics.Decision(policy.Name, "admitted", null);
            metrics.Tokens(policy.Name, "estimated", cost);
            if (charges is null)
            {
                charges = new TokenCharges(llm, metrics);
                exchange.OnCompleted(charges); // registered at the first charge: whatever happens next, it is reconciled
            }

            charges.Add(policy, partition, cost);
            tightest = RateLimitHeaders.Tighter(tightest, decision.Info);
        }

        shaping.Tokens = tightest;
        shaping.TokensReserved = charges is null ? 0 : cost;
        if (charges is not null && llm.Valid)
        {
            // Ask a stream for its usage if the client did not; the usage chunk is then hidden from the client.
            var strip = llm.Stream && !llm.IncludeUsage && !classification.IsGrpc;
            if (strip && (classification.ForwardedBody ?? classification.Body) is { Length: > 0 } body)
            {
                classification.ReplaceBody(LlmRequest.WithIncludeUsage(body.Span));
            }

            exchange.MeterUsage(strip);
        }

        await next(context);
    }
}

/// <summary>
/// The token charges of one exchange, reconciled when it completes (see <see cref="TokenStep"/>): each policy is
/// corrected by the difference between what the exchange really cost and what was charged.
/// </summary>
internal sealed class TokenCharges(LlmRequest llm, ShapingMetrics metrics) : IExchangeFinalizer
{
    private readonly List<(ShapingPolicy Policy, string Partition, long Charged)> _charges = new(2);

    public void Add(ShapingPolicy policy, string partition, long charged) => _charges.Add((policy, partition, charged));

    public async ValueTask CompleteAsync(ExchangeResult result)
    {
        // Read by completion before the finalizers run (UsageMeter.Finish), and disposed of by it after them.
        var usage = result.Context.GetExchange()?.Usage;
        long? actual;
        RecordedTokens tokens;
        var capture = result.Context.GetExchange()?.Capture;
        if (usage?.CompletionTokens is { } completion)
        {
            var prompt = usage.PromptTokens ?? llm.PromptTokens;
            actual = prompt + completion;
            tokens = new RecordedTokens { Prompt = prompt, Completion = completion, Estimated = usage.PromptTokens is null, Source = TokenSources.Usage };
        }
        else if (result.Outcome == ExchangeOutcome.Answered || result.Context.Response.StatusCode >= 400)
        {
            actual = 0; // never reached the model, or refused by it
            tokens = new RecordedTokens { Source = TokenSources.None };
        }
        else if (usage is not null && (usage.Delivered > 0 || result.Outcome == ExchangeOutcome.ClientAbort))
        {
            // Every chunk delivered, uncapped: a request without max_tokens reserves the default only, and a client that
            // left before the usage chunk must still pay for what it got (found by a stranger's review: four streams cut
            // short took about 3x a 1,000-token budget while each was charged its 12-token reservation).
            var delivered = usage.Delivered;
            actual = llm.PromptTokens + delivered;
            tokens = new RecordedTokens { Prompt = llm.PromptTokens, Completion = delivered, Estimated = true, Source = TokenSources.Delivered };
        }
        else
        {
            // Nothing known better than the estimate: the charge stands, and the record says it is one.
            actual = null;
            tokens = new RecordedTokens { Prompt = llm.PromptTokens, Completion = llm.MaxTokens, Estimated = true, Source = TokenSources.MaxTokens };
        }

        var recorded = new RecordedTokenCharge[_charges.Count];
        for (var i = 0; i < _charges.Count; i++)
        {
            var (policy, partition, charged) = _charges[i];
            var final = actual ?? charged;
            metrics.Tokens(policy.Name, "actual", final);
            metrics.Tokens(policy.Name, "refunded", charged - final);
            recorded[i] = new RecordedTokenCharge { Policy = policy.Name, Estimated = llm.Estimate, Reserved = charged, Actual = final, Refunded = Math.Max(0, charged - final) };
            var delta = final - charged;
            if (delta != 0)
            {
                try
                {
                    // Above the reservation the difference is still charged: the partition goes into debt.
                    await policy.AdjustAsync(partition, delta, CancellationToken.None);
                }
                catch (Exception ex) when (ex is StackExchange.Redis.RedisException or TimeoutException)
                {
                    // The policy falls back by itself; a lost correction errs on the side of the estimate.
                }
            }
        }

        capture?.SetTokens(tokens with { Charges = recorded });
        if (actual is > 0 && result.Context.GetExchange() is { } exchange)
        {
            exchange.Tokens = (tokens.Prompt, tokens.Completion);
        }
    }
}

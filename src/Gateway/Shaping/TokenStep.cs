using Gateway.Exchange;
using Gateway.Shaping.Policies;
using Gateway.Shaping.Tokens;

namespace Gateway.Shaping;

/// <summary>
/// The token-accounting step: the route's policies counted in tokens (<see cref="RoutePlan.TokenPolicies"/>) reserve
/// the request's estimate (prompt tokens plus <c>max_tokens</c>) up front, in order, each on its partition; a refusal
/// ends the request path with 429 naming the policy. When the exchange completes, each charge is reconciled with what
/// it really cost (<see cref="TokenCharges"/>): the usage the backend reported (asked for on streams when the client
/// did not, and then removed from what the client sees), or for a stream cut short the prompt plus the chunks
/// delivered, or nothing for a request the backend refused or failed. Admitted responses carry
/// <c>x-ratelimit-*-tokens</c> headers.
/// </summary>
internal sealed class TokenStep(RequestDelegate next, ShapingMetrics metrics, RefusalLog refusals, ShapingRuntime runtime)
{
    public Task InvokeAsync(HttpContext context)
    {
        var exchange = context.GetExchange()!;
        var classification = exchange.Classification!;
        var policies = classification.Plan.TokenPolicies;
        return policies.Length == 0 ? next(context) : ChargeAsync(context, exchange, classification, policies);
    }

    private async Task ChargeAsync(HttpContext context, ExchangeContext exchange, Classification classification, ShapingPolicy[] policies)
    {
        var aborted = exchange.ClientAborted;
        var options = runtime.Current.Options;
        var llm = await classification.GetLlmRequestAsync(options.MaxInspectBytes, options.DefaultMaxTokens, aborted);
        if (llm.Undecodable)
        {
            // Its prompt cannot be counted; refused before any charge, whatever the backend would make of it.
            exchange.Refuse(GatewayAnswer.BadRequest("invalid_json",
                "The request body is not valid JSON text: a string holds bytes that are not UTF-8 or a lone surrogate escape (\\ud800 to \\udfff)."));
            return;
        }

        var cost = llm.Estimate;
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
                if (ShapingAnswers.Refused(metrics, refusals, options, policy, partition, decision) is { } answer)
                {
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

        RateLimitHeaders.Set(context.Response.Headers, tightest, "tokens");
        if (charges is not null && llm.Valid)
        {
            // Ask a stream for its usage if the client did not; the usage chunk is then hidden from the client.
            var strip = llm.Stream && !llm.IncludeUsage && !classification.IsGrpc;
            if (strip && classification.Body is { Length: > 0 } body)
            {
                var rewritten = LlmRequest.WithIncludeUsage(body.Span);
                context.Request.Body = new MemoryStream(rewritten, writable: false);
                context.Request.ContentLength = rewritten.Length;
            }

            exchange.FilterResponseBody(inner => charges.Meter = new UsageMeter(context, inner, strip));
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

    /// <summary>The response's usage meter, once installed before forwarding.</summary>
    public UsageMeter? Meter { get; set; }

    public void Add(ShapingPolicy policy, string partition, long charged) => _charges.Add((policy, partition, charged));

    public async ValueTask CompleteAsync(ExchangeResult result)
    {
        var usage = Meter;
        try
        {
            usage?.Finish();
            long actual;
            if (usage?.CompletionTokens is { } completion)
            {
                actual = (usage.PromptTokens ?? llm.PromptTokens) + completion;
            }
            else if (result.Outcome == ExchangeOutcome.Answered || result.Context.Response.StatusCode >= 400)
            {
                actual = 0; // never reached the model, or refused by it
            }
            else if (usage is not null && (usage.Delivered > 0 || result.Outcome == ExchangeOutcome.ClientAbort))
            {
                actual = llm.PromptTokens + Math.Min(usage.Delivered, llm.MaxTokens);
            }
            else
            {
                return; // nothing known better than the estimate
            }

            foreach (var (policy, partition, charged) in _charges)
            {
                metrics.Tokens(policy.Name, "actual", actual);
                var delta = actual - charged;
                if (delta != 0)
                {
                    try
                    {
                        await policy.AdjustAsync(partition, delta, CancellationToken.None);
                    }
                    catch (Exception ex) when (ex is StackExchange.Redis.RedisException or TimeoutException)
                    {
                        // The policy falls back by itself; a lost correction errs on the side of the estimate.
                    }
                }
            }
        }
        finally
        {
            usage?.Dispose();
        }
    }
}

using Contracts.Wire;
using Gateway.Exchange;
using Gateway.Shaping.Policies;
using Grpc.Core;
using Microsoft.AspNetCore.Http.Features;

namespace Gateway.Shaping;

/// <summary>
/// The rate-limit step: the route's policies counted in requests (<see cref="RoutePlan.RequestPolicies"/>: token
/// bucket, fixed and sliding windows, concurrency, WebSocket connections), in order, each on its partition, then the
/// tenant's own request limits (<see cref="Tenants.TenantShaping.RequestPolicies"/>: <c>tenant:NAME:requests_per_minute</c>,
/// <c>tenant:NAME:in_flight</c>) when the exchange has a tenant. A refusal
/// ends the request path with 429 and <c>Retry-After</c> naming the policy (gRPC RESOURCE_EXHAUSTED, WebSocket close
/// 1008; 503 when a fleet-wide policy cannot reach Redis in Closed mode); a shadow policy only counts and logs.
/// Concurrency leases are released when the exchange completes, whatever its outcome. Each admitting policy's charge is
/// kept in the exchange's <see cref="ShapingCharges"/>: a refusal by a later policy gives the earlier ones back at once,
/// one by a later step (tokens, admission, breaker) when the exchange completes. Responses carry
/// <c>x-ratelimit-*-requests</c> headers (the tightest rate policy's figures, or the refusing policy's with remaining 0),
/// written by <see cref="ShapingCharges"/> when the response starts.
/// </summary>
internal sealed class RateLimitStep(RequestDelegate next, ShapingMetrics metrics, RefusalLog refusals, ShapingRuntime runtime)
{
    public Task InvokeAsync(HttpContext context)
    {
        var exchange = context.GetExchange()!;
        var classification = exchange.Classification!;
        var policies = classification.Plan.RequestPolicies;
        var tenantPolicies = classification.Tenant is null ? [] : runtime.Current.TenantFor(classification.Tenant)?.RequestPolicies ?? [];
        return policies.Length == 0 && tenantPolicies.Length == 0 ? next(context) : LimitAsync(context, exchange, classification, policies, tenantPolicies);
    }

    private async Task LimitAsync(HttpContext context, ExchangeContext exchange, Classification classification, ShapingPolicy[] policies, ShapingPolicy[] tenantPolicies)
    {
        var aborted = exchange.ClientAborted;
        var options = runtime.Current.Options;
        var charges = ShapingCharges.For(context, exchange);
        RateInfo? tightest = null;
        for (var i = 0; i < policies.Length + tenantPolicies.Length; i++)
        {
            // The route's policies, then the tenant's own limits (requests per minute, in flight).
            var policy = i < policies.Length ? policies[i] : tenantPolicies[i - policies.Length];
            if (policy.Options.Kind == PolicyKind.WebSocket && !classification.IsWebSocket)
            {
                continue;
            }

            if (policy.Partition.NeedsSession)
            {
                await classification.GetSessionIdAsync(aborted);
            }

            var partition = policy.Partition.Of(context, classification);
            var decision = await policy.AcquireAsync(partition, 1, aborted);
            if (!decision.Admitted)
            {
                if (ShapingAnswers.Refused(metrics, refusals, options, policy, partition, decision) is { } answer)
                {
                    // The earlier policies' permits go back now: a refused request takes nothing from them.
                    await charges.RefundAsync();
                    charges.Requests = tightest;
                    if (decision.Info is { } info)
                    {
                        charges.Refusal = (false, info with { Remaining = 0 });
                    }

                    exchange.Refuse(answer);
                    return;
                }

                continue; // a shadow policy
            }

            metrics.Decision(policy.Name, "admitted", null);
            if (decision.Charge is { } charge)
            {
                charges.Add(charge);
            }

            if (decision.Lease is { } lease)
            {
                exchange.OnCompleted(new LeaseRelease(lease));
            }

            tightest = RateLimitHeaders.Tighter(tightest, decision.Info);
            if (policy.Options.Kind == PolicyKind.WebSocket && policy.Options.MessagesPerConnection > 0 && classification.IsWebSocket)
            {
                var name = policy.Name;
                exchange.FilterConnection(WebSocketMessageLimit.Filter(policy.Options.MessagesPerConnection, name, () => metrics.Decision(name, "refused", "messages_per_connection")));
            }
        }

        charges.Requests = tightest;
        await next(context);
    }

    /// <summary>Releases a policy's lease (a concurrency permit) when the exchange ends.</summary>
    private sealed class LeaseRelease(IDisposable lease) : IExchangeFinalizer
    {
        public ValueTask CompleteAsync(ExchangeResult result)
        {
            lease.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}

/// <summary>The answers and accounting of a policy's refusal, shared by the rate-limit and token steps.</summary>
internal static class ShapingAnswers
{
    /// <summary>
    /// Counts and logs a refusal; returns the answer to give, or null for a shadow policy (counted as
    /// <c>shadow_refused</c>, and the request goes on).
    /// </summary>
    public static GatewayAnswer? Refused(ShapingMetrics metrics, RefusalLog refusals, ShapingOptions options, ShapingPolicy policy, string partition, PolicyDecision decision, long requested = 1)
    {
        var reason = decision.Reason ?? GatewayErrorCodes.RateLimited;
        if (policy.Options.Shadow)
        {
            metrics.Decision(policy.Name, "shadow_refused", reason);
            refusals.Refused(policy.Name, reason, partition, shadow: true, options.RefusalLogInterval);
            return null;
        }

        metrics.Decision(policy.Name, "refused", reason);
        refusals.Refused(policy.Name, reason, partition, shadow: false, options.RefusalLogInterval);
        if (reason == GatewayErrorCodes.RequestTooLarge)
        {
            // No wait would admit it: no Retry-After (as OpenAI answers a request above a TPM limit).
            return new GatewayAnswer(StatusCodes.Status429TooManyRequests, StatusCode.ResourceExhausted, GatewayErrorTypes.RateLimited, reason,
                $"Request too large for token limit '{policy.Name}': it needs {requested} tokens (prompt + max_tokens) and the budget is {decision.Info?.Limit ?? policy.Options.TokenBudget} tokens per {policy.Options.EffectiveWindow:c} per {policy.Options.Partition}. Lower max_tokens or shorten the prompt.",
                null, policy.Name);
        }

        var unavailable = reason == GatewayErrorCodes.RedisUnavailable;
        return new GatewayAnswer(unavailable ? StatusCodes.Status503ServiceUnavailable : StatusCodes.Status429TooManyRequests,
            unavailable ? StatusCode.Unavailable : StatusCode.ResourceExhausted, unavailable ? GatewayErrorTypes.Overloaded : GatewayErrorTypes.RateLimited, reason,
            Describe(policy, reason, decision.RetryAfter), decision.RetryAfter ?? TimeSpan.FromSeconds(1), policy.Name);
    }

    private static string Describe(ShapingPolicy policy, string reason, TimeSpan? retryAfter)
    {
        var o = policy.Options;
        var what = o.Kind switch
        {
            PolicyKind.TokenBucket => $"{o.TokensPerPeriod} requests per {o.ReplenishmentPeriod}, burst {o.TokenLimit}",
            PolicyKind.FixedWindow or PolicyKind.SlidingWindow => $"{o.PermitLimit} requests per {o.EffectiveWindow}",
            PolicyKind.Concurrency => $"{o.PermitLimit} requests at once",
            PolicyKind.Tokens => $"{o.TokenBudget} tokens per {o.EffectiveWindow}",
            PolicyKind.WebSocket => $"{o.PermitLimit} WebSocket connections at once",
            _ => o.Kind.ToString(),
        };
        var scope = o.Scope == PolicyScope.Global ? "fleet-wide" : "per gateway";
        if (reason == GatewayErrorCodes.RedisUnavailable)
        {
            return $"Rate limit '{policy.Name}' ({o.Kind}, {what} per {o.Partition}, {scope}) cannot be enforced: Redis is unavailable (down, frozen or slower than Gateway:Shaping:RedisTimeout), and the policy's FailMode is Closed" +
                (retryAfter is { } r ? $"; retry after {GatewayDuration.Format(r)}." : ".");
        }

        return $"Rate limit '{policy.Name}' ({o.Kind}, {what} per {o.Partition}, {scope}) refused this request" +
            (retryAfter is { } ra ? $"; retry after {GatewayDuration.Format(ra)}." : ".");
    }
}

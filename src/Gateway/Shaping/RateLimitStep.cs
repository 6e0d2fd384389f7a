using Gateway.Exchange;
using Gateway.Shaping.Policies;
using Grpc.Core;
using Microsoft.AspNetCore.Http.Features;

namespace Gateway.Shaping;

/// <summary>
/// The rate-limit step: the route's policies counted in requests (<see cref="RoutePlan.RequestPolicies"/>: token
/// bucket, fixed and sliding windows, concurrency, WebSocket connections), in order, each on its partition. A refusal
/// ends the request path with 429 and <c>Retry-After</c> naming the policy (gRPC RESOURCE_EXHAUSTED, WebSocket close
/// 1008; 503 when a fleet-wide policy cannot reach Redis in Closed mode); a shadow policy only counts and logs.
/// Concurrency leases are released when the exchange completes, whatever its outcome. Admitted responses carry
/// <c>x-ratelimit-*-requests</c> headers (the tightest policy's figures).
/// </summary>
internal sealed class RateLimitStep(RequestDelegate next, ShapingMetrics metrics, RefusalLog refusals, ShapingRuntime runtime)
{
    public Task InvokeAsync(HttpContext context)
    {
        var exchange = context.GetExchange()!;
        var classification = exchange.Classification!;
        var policies = classification.Plan.RequestPolicies;
        return policies.Length == 0 ? next(context) : LimitAsync(context, exchange, classification, policies);
    }

    private async Task LimitAsync(HttpContext context, ExchangeContext exchange, Classification classification, ShapingPolicy[] policies)
    {
        var aborted = exchange.ClientAborted;
        var options = runtime.Current.Options;
        RateInfo? tightest = null;
        foreach (var policy in policies)
        {
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
                    exchange.Refuse(answer);
                    return;
                }

                continue; // a shadow policy
            }

            metrics.Decision(policy.Name, "admitted", null);
            if (decision.Lease is { } lease)
            {
                exchange.OnCompleted(new LeaseRelease(lease));
            }

            tightest = RateLimitHeaders.Tighter(tightest, decision.Info);
            if (policy.Options.Kind == PolicyKind.WebSocket && policy.Options.MessagesPerConnection > 0
                && context.Features.Get<IHttpUpgradeFeature>() is { IsUpgradableRequest: true })
            {
                var name = policy.Name;
                var limit = policy.Options.MessagesPerConnection;
                exchange.FilterUpgrade(inner => new WebSocketMessageLimit(inner, limit, name, () => metrics.Decision(name, "refused", "messages_per_connection")));
            }
        }

        RateLimitHeaders.Set(context.Response.Headers, tightest, "requests");
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
    public static GatewayAnswer? Refused(ShapingMetrics metrics, RefusalLog refusals, ShapingOptions options, ShapingPolicy policy, string partition, PolicyDecision decision)
    {
        var reason = decision.Reason ?? "rate_limited";
        if (policy.Options.Shadow)
        {
            metrics.Decision(policy.Name, "shadow_refused", reason);
            refusals.Refused(policy.Name, reason, partition, shadow: true, options.RefusalLogInterval);
            return null;
        }

        metrics.Decision(policy.Name, "refused", reason);
        refusals.Refused(policy.Name, reason, partition, shadow: false, options.RefusalLogInterval);
        var unavailable = reason == "redis_unavailable";
        return new GatewayAnswer(unavailable ? StatusCodes.Status503ServiceUnavailable : StatusCodes.Status429TooManyRequests,
            unavailable ? StatusCode.Unavailable : StatusCode.ResourceExhausted, unavailable ? "overloaded" : "rate_limited", reason,
            Describe(policy, decision.RetryAfter), decision.RetryAfter ?? TimeSpan.FromSeconds(1), policy.Name);
    }

    private static string Describe(ShapingPolicy policy, TimeSpan? retryAfter)
    {
        var o = policy.Options;
        var what = o.Kind switch
        {
            PolicyKind.TokenBucket => $"{o.TokensPerPeriod} requests per {o.ReplenishmentPeriod}, burst {o.TokenLimit}",
            PolicyKind.FixedWindow or PolicyKind.SlidingWindow => $"{o.PermitLimit} requests per {o.Window}",
            PolicyKind.Concurrency => $"{o.PermitLimit} requests at once",
            PolicyKind.Tokens => $"{o.TokensPerMinute} tokens per minute",
            PolicyKind.WebSocket => $"{o.PermitLimit} WebSocket connections at once",
            _ => o.Kind.ToString(),
        };
        var scope = o.Scope == PolicyScope.Global ? "fleet-wide" : "per gateway";
        return $"Rate limit '{policy.Name}' ({o.Kind}, {what} per {o.Partition}, {scope}) refused this request" +
            (retryAfter is { } ra ? $"; retry after {RateLimitHeaders.Duration(ra)}." : ".");
    }
}

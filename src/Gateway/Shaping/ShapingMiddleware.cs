using System.Globalization;
using System.Net.WebSockets;
using Gateway.Exchange;
using Gateway.Recording;
using Gateway.Shaping.Admission;
using Gateway.Shaping.Policies;
using Gateway.Shaping.Tokens;
using Grpc.Core;
using Microsoft.AspNetCore.Http.Features;
using Polly;
using Polly.CircuitBreaker;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Shaping;

/// <summary>
/// The shaping step of the proxy pipeline, after capture and before load balancing:
/// <list type="number">
/// <item>the route's rate-limit policies (<c>Metadata:Policies</c>), in order, each on its partition: a refusal answers
/// 429 with <c>Retry-After</c> (gRPC RESOURCE_EXHAUSTED, WebSocket close 1008) naming the policy, a shadow policy only
/// counts and logs;</item>
/// <item>token-aware policies charge the prompt's tokens plus <c>max_tokens</c> up front and are corrected by the usage
/// the response reports (asked for on streams when the client did not, and then hidden from the client);</item>
/// <item>the cluster's circuit breaker (open: 503 at once until its break is over, then Polly lets one trial request
/// through, half-open: its success closes the circuit, its failure opens it again) and admission: in-flight cap, priority queue, adaptive limit
/// (queue full or timed out: 503 with <c>Retry-After</c>, gRPC UNAVAILABLE, WebSocket close 1013);</item>
/// <item>admitted responses carry <c>x-ratelimit-*-requests</c> and <c>x-ratelimit-*-tokens</c> headers.</item>
/// </list>
/// Leases are released and token charges corrected in every outcome, client aborts included.
/// </summary>
internal sealed class ShapingMiddleware
{
    private static readonly Func<object, Task> s_markFirstByte = static state =>
    {
        ((AdmissionLease)state).MarkFirstByte();
        return Task.CompletedTask;
    };

    private readonly RequestDelegate _next;
    private readonly ShapingRuntime _runtime;
    private readonly ShapingMetrics _metrics;
    private readonly RefusalLog _refusals;
    private readonly SessionResolver _sessions;

    public ShapingMiddleware(RequestDelegate next, ShapingRuntime runtime, ShapingMetrics metrics, RefusalLog refusals, SessionResolver sessions)
    {
        _next = next;
        _runtime = runtime;
        _metrics = metrics;
        _refusals = refusals;
        _sessions = sessions;
    }

    public async Task InvokeAsync(HttpContext context)
    {
        var state = _runtime.Current;
        var route = context.GetReverseProxyFeature().Route.Config;
        var policies = state.PoliciesFor(route);
        ClusterShaping? cluster = null;
        if (route.ClusterId is not null)
        {
            state.Clusters.TryGetValue(route.ClusterId, out cluster);
        }

        var exchange = context.GetExchange();
        if ((policies.Length == 0 && cluster is null) || exchange is null)
        {
            await _next(context);
            return;
        }

        var aborted = exchange.ClientAborted;
        exchange.RouteId ??= route.RouteId;
        exchange.ClusterId ??= route.ClusterId;
        exchange.ClientKey ??= ClientKey.Of(context);
        var isWebSocket = SessionResolver.IsWebSocket(context);

        List<IDisposable>? leases = null;
        List<(ShapingPolicy Policy, string Partition, long Charged)>? charges = null;
        UsageMeter? usage = null;
        LlmRequest? llm = null;
        AdmissionLease? admitted = null;
        try
        {
            RateInfo? requests = null, tokens = null;
            foreach (var policy in policies)
            {
                if (policy.Options.Kind == PolicyKind.WebSocket && !isWebSocket)
                {
                    continue;
                }

                if (policy.Partition.NeedsSession)
                {
                    await _sessions.ResolveAsync(context, exchange, aborted);
                }

                long cost = 1;
                if (policy.CountsTokens)
                {
                    llm ??= await ReadLlmRequestAsync(context, exchange, state.Options, aborted);
                    if (llm.Undecodable)
                    {
                        // Its prompt cannot be counted; refused before any charge, whatever the backend would make of it.
                        await ErrorResponses.WriteAsync(context, StatusCodes.Status400BadRequest, StatusCode.InvalidArgument, "invalid_request", "invalid_json",
                            "The request body is not valid JSON text: a string holds bytes that are not UTF-8 or a lone surrogate escape (\\ud800 to \\udfff).");
                        return;
                    }

                    cost = llm.Estimate;
                }

                var partition = policy.Partition.Of(context, exchange);
                var decision = await policy.AcquireAsync(partition, cost, aborted);
                if (!decision.Admitted)
                {
                    if (policy.Options.Shadow)
                    {
                        _metrics.Decision(policy.Name, "shadow_refused", decision.Reason);
                        _refusals.Refused(policy.Name, decision.Reason ?? "refused", partition, shadow: true, state.Options.RefusalLogInterval);
                        continue;
                    }

                    _metrics.Decision(policy.Name, "refused", decision.Reason);
                    _refusals.Refused(policy.Name, decision.Reason ?? "refused", partition, shadow: false, state.Options.RefusalLogInterval);
                    await RefuseAsync(context, exchange, decision.Reason == "redis_unavailable" ? 503 : 429, decision.Reason ?? "rate_limited", policy.Name,
                        Describe(policy, decision.RetryAfter), decision.RetryAfter, isWebSocket);
                    return;
                }

                _metrics.Decision(policy.Name, "admitted", null);
                if (decision.Lease is not null)
                {
                    (leases ??= []).Add(decision.Lease);
                }

                if (policy.CountsTokens)
                {
                    (charges ??= []).Add((policy, partition, cost));
                    _metrics.Tokens(policy.Name, "estimated", cost);
                    tokens = Tighter(tokens, decision.Info);
                }
                else
                {
                    requests = Tighter(requests, decision.Info);
                }

                if (policy.Options.Kind == PolicyKind.WebSocket && policy.Options.MessagesPerConnection > 0
                    && context.Features.Get<IHttpUpgradeFeature>() is { IsUpgradableRequest: true } upgrade)
                {
                    var name = policy.Name;
                    context.Features.Set<IHttpUpgradeFeature>(new WebSocketMessageLimit(upgrade, policy.Options.MessagesPerConnection, name,
                        () => _metrics.Decision(name, "refused", "messages_per_connection")));
                }
            }

            SetRateLimitHeaders(context.Response.Headers, requests, "requests");
            SetRateLimitHeaders(context.Response.Headers, tokens, "tokens");

            if (charges is not null && llm is { Valid: true })
            {
                // Ask a stream for its usage if the client did not; the usage chunk is then hidden from the client.
                var strip = llm.Stream && !llm.IncludeUsage && !ErrorResponses.IsGrpc(context.Request);
                if (strip && exchange.JsonBody is { Length: > 0 } body)
                {
                    var rewritten = LlmRequest.WithIncludeUsage(body.Span);
                    context.Request.Body = new MemoryStream(rewritten, writable: false);
                    context.Request.ContentLength = rewritten.Length;
                    exchange.RequestBodyReplaced = true;
                }

                usage = new UsageMeter(context, context.Features.Get<IHttpResponseBodyFeature>()!, strip);
                context.Features.Set<IHttpResponseBodyFeature>(usage);
            }

            if (cluster is null)
            {
                await _next(context);
                return;
            }

            if (cluster.Breaker is { } breaker && breaker.IsBreaking(out var breakLeft))
            {
                // Open and within its break: refused before it queues. After the break, Polly decides (half-open trial).
                await RefuseCircuitOpenAsync(context, exchange, cluster, state.Options, breakLeft, isWebSocket);
                return;
            }

            var settings = cluster.Controller.Settings;
            var priority = Priority(context, exchange, settings, state.Options);
            var result = await cluster.Controller.EnterAsync(exchange.ClientKey, priority, aborted);
            if (result.Lease is null)
            {
                _metrics.Admission(cluster.Controller.ClusterId, "refused", result.Reason, TimeSpan.Zero);
                if (result.Reason == "cancelled")
                {
                    return; // the client went away while waiting
                }

                _refusals.Refused($"admission:{cluster.Controller.ClusterId}", result.Reason!, exchange.ClientKey, shadow: false, state.Options.RefusalLogInterval);
                await RefuseAsync(context, exchange, 503, result.Reason!, $"admission:{cluster.Controller.ClusterId}",
                    $"Cluster '{cluster.Controller.ClusterId}' is at capacity ({cluster.Controller.InFlight} in flight, {cluster.Controller.Queued} waiting): {result.Reason!.Replace('_', ' ')}.",
                    result.RetryAfter, isWebSocket);
                return;
            }

            admitted = result.Lease;
            _metrics.Admission(cluster.Controller.ClusterId, "admitted", null, result.Waited);
            context.Response.OnStarting(s_markFirstByte, admitted);
            if (cluster.Breaker is { } b)
            {
                // Polly judges the exchange by its start (status known), not its end: a long stream or a WebSocket session
                // that is the half-open trial must not hold the circuit for as long as it lasts. The rest of the exchange
                // (the body, the upgraded connection) goes on outside the pipeline and is awaited after it.
                Outcome<int> outcome;
                var forwarding = new System.Runtime.CompilerServices.StrongBox<Task?>();
                var ctx = ResilienceContextPool.Shared.Get(aborted);
                try
                {
                    outcome = await b.Pipeline.ExecuteOutcomeAsync(static (_, s) => ForwardUntilStartedAsync(s.Next, s.Context, s.Exchange, s.Forwarding),
                        ctx, (Next: _next, Context: context, Exchange: exchange, Forwarding: forwarding));
                }
                finally
                {
                    ResilienceContextPool.Shared.Return(ctx);
                }

                switch (outcome.Exception)
                {
                    case BrokenCircuitException broken:
                        // Polly refused it (isolated, still open, or half-open with its one trial in flight): nothing was sent.
                        admitted.Discard();
                        await RefuseCircuitOpenAsync(context, exchange, cluster, state.Options, broken.RetryAfter ?? TimeSpan.Zero, isWebSocket);
                        return;
                    case { } thrown:
                        System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(thrown);
                        break;
                }

                if (forwarding.Value is { } rest)
                {
                    await rest; // the rest of the exchange after its start; an exception from the proxy step is rethrown
                }
            }
            else
            {
                await _next(context);
            }

            if (context.Response.StatusCode >= 500 || exchange.IsClientAbort)
            {
                admitted.Discard(); // a failure's latency says nothing about the backend's queue
            }
        }
        finally
        {
            admitted?.Dispose();
            if (leases is not null)
            {
                foreach (var l in leases)
                {
                    l.Dispose();
                }
            }

            if (charges is not null)
            {
                await CorrectAsync(charges, llm!, usage, context, exchange);
            }

            usage?.Dispose();
        }
    }

    /// <summary>
    /// Runs the rest of the pipeline (YARP) inside the circuit breaker until the response starts (its status is then
    /// known: a 200 that goes on streaming, a 101 whose WebSocket session goes on) or the forward ends before that (a
    /// forwarder error answered 502/504, an exception), whichever comes first. The outcome is what Polly judges;
    /// <paramref name="forwarding"/> gets the forward's task, which the caller awaits after the pipeline.
    /// </summary>
    private static async ValueTask<Outcome<int>> ForwardUntilStartedAsync(RequestDelegate next, HttpContext context, ExchangeContext exchange,
        System.Runtime.CompilerServices.StrongBox<Task?> forwarding)
    {
        var started = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        context.Response.OnStarting(static state =>
        {
            // Runs on the forward's own flow as the headers go out, so the features are read without a race.
            var (tcs, c, e) = ((TaskCompletionSource<int>, HttpContext, ExchangeContext))state;
            tcs.TrySetResult(BreakerStatus(c, e));
            return Task.CompletedTask;
        }, (started, context, exchange));

        Task task;
        try
        {
            task = next(context);
        }
        catch (Exception ex)
        {
            task = Task.FromException(ex);
        }

        forwarding.Value = task;
        if (await Task.WhenAny(started.Task, task) == started.Task)
        {
            return Outcome.FromResult(await started.Task);
        }

        try
        {
            await task;
        }
        catch (Exception ex)
        {
            return Outcome.FromException<int>(ex);
        }

        return Outcome.FromResult(BreakerStatus(context, exchange));
    }

    /// <summary>
    /// The status the circuit breaker judges an exchange by (5xx: the backend failed). A failure on the client's side is
    /// never the backend's: a client that went away counts as 499, a request that could not be forwarded as the client
    /// sent it (<see cref="Forwarding.ForwarderErrors.IsClientSide"/>) as 400, whatever status YARP set for it.
    /// </summary>
    private static int BreakerStatus(HttpContext context, ExchangeContext exchange)
    {
        if (exchange.IsClientAbort)
        {
            return ExchangeMiddleware.ClientClosedRequest;
        }

        if (context.Features.Get<IForwarderErrorFeature>() is { } error && Forwarding.ForwarderErrors.IsClientSide(error.Error, error.Exception))
        {
            return StatusCodes.Status400BadRequest;
        }

        return context.Response.StatusCode;
    }

    private Task RefuseCircuitOpenAsync(HttpContext context, ExchangeContext exchange, ClusterShaping cluster, ShapingOptions options, TimeSpan retryAfter, bool isWebSocket)
    {
        var id = cluster.Controller.ClusterId;
        _metrics.Admission(id, "refused", "circuit_open", TimeSpan.Zero);
        _refusals.Refused($"admission:{id}", "circuit_open", exchange.ClientKey ?? ClientKey.Of(context), shadow: false, options.RefusalLogInterval);
        return RefuseAsync(context, exchange, 503, "circuit_open", $"admission:{id}",
            $"The circuit breaker of cluster '{id}' is open after repeated backend failures; a trial request is let through once its break is over.",
            retryAfter > TimeSpan.Zero ? retryAfter : cluster.Options.CircuitBreaker.BreakDuration, isWebSocket);
    }

    /// <summary>
    /// Corrects each token charge with what the exchange really cost: the usage the backend reported; for a stream cut
    /// short without usage, the prompt plus the chunks delivered; for a refused or failed request, nothing.
    /// </summary>
    private async Task CorrectAsync(List<(ShapingPolicy Policy, string Partition, long Charged)> charges, LlmRequest llm, UsageMeter? usage, HttpContext context, ExchangeContext exchange)
    {
        usage?.Finish();
        long actual;
        if (usage?.CompletionTokens is { } completion)
        {
            actual = (usage.PromptTokens ?? llm.PromptTokens) + completion;
        }
        else if (context.Response.StatusCode >= 400)
        {
            actual = 0; // never reached the model, or refused by it
        }
        else if (usage is not null && (usage.Delivered > 0 || exchange.IsClientAbort))
        {
            actual = llm.PromptTokens + Math.Min(usage.Delivered, llm.MaxTokens);
        }
        else
        {
            return; // nothing known better than the estimate
        }

        foreach (var (policy, partition, charged) in charges)
        {
            _metrics.Tokens(policy.Name, "actual", actual);
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

    private static async ValueTask<LlmRequest> ReadLlmRequestAsync(HttpContext context, ExchangeContext exchange, ShapingOptions options, CancellationToken cancellationToken)
    {
        if (ErrorResponses.IsGrpc(context.Request))
        {
            var body = await RequestBody.ReadAsync(context, exchange, options.MaxInspectBytes, cancellationToken);
            return LlmRequest.FromGrpc(body.Span, options.DefaultMaxTokens);
        }

        var json = await RequestBody.ReadJsonAsync(context, exchange, options.MaxInspectBytes, cancellationToken);
        return LlmRequest.FromJson(json.Span, options.DefaultMaxTokens);
    }

    private static int Priority(HttpContext context, ExchangeContext exchange, AdmissionSettings settings, ShapingOptions options)
    {
        if (context.Request.Headers[settings.Options.PriorityHeader] is { Count: > 0 } header && settings.ClassIndex(header[0]) is { } fromHeader)
        {
            return fromHeader;
        }

        if (exchange.ClientKey is not null && options.KeyPriorities.TryGetValue(exchange.ClientKey, out var tier) && settings.ClassIndex(tier) is { } fromKey)
        {
            return fromKey;
        }

        return settings.DefaultClass;
    }

    private static RateInfo? Tighter(RateInfo? current, RateInfo? next) =>
        next is null ? current : current is null || next.Value.Remaining < current.Value.Remaining ? next : current;

    private static void SetRateLimitHeaders(IHeaderDictionary headers, RateInfo? info, string unit)
    {
        if (info is not { } i)
        {
            return;
        }

        headers[$"x-ratelimit-limit-{unit}"] = i.Limit.ToString(CultureInfo.InvariantCulture);
        headers[$"x-ratelimit-remaining-{unit}"] = i.Remaining.ToString(CultureInfo.InvariantCulture);
        headers[$"x-ratelimit-reset-{unit}"] = Duration(i.Reset);
    }

    /// <summary>A duration the way LLM APIs write it in rate-limit headers: <c>250ms</c>, <c>1.5s</c>, <c>6m0s</c>.</summary>
    internal static string Duration(TimeSpan t) =>
        t < TimeSpan.FromSeconds(1) ? $"{Math.Ceiling(t.TotalMilliseconds).ToString(CultureInfo.InvariantCulture)}ms"
        : t < TimeSpan.FromMinutes(1) ? $"{Math.Round(t.TotalSeconds, 3).ToString(CultureInfo.InvariantCulture)}s"
        : $"{(int)t.TotalMinutes}m{t.Seconds}s";

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
            (retryAfter is { } ra ? $"; retry after {Duration(ra)}." : ".");
    }

    /// <summary>How long a refused WebSocket waits for the client's Close before the connection is dropped.</summary>
    private static readonly TimeSpan WebSocketCloseWait = TimeSpan.FromSeconds(2);

    private static async Task RefuseAsync(HttpContext context, ExchangeContext exchange, int status, string reason, string limit, string message, TimeSpan? retryAfter, bool isWebSocket)
    {
        if (exchange.IsClientAbort)
        {
            return;
        }

        if (isWebSocket && context.WebSockets.IsWebSocketRequest)
        {
            // A WebSocket client cannot read a refused handshake's body: accept it and close with the reason.
            // The closing handshake is completed (RFC 6455 §7.1.1: wait for the client's Close, bounded), so the client
            // reads the reason before the TCP connection ends, even when it had a message in flight (discarded here).
            using var socket = await context.WebSockets.AcceptWebSocketAsync();
            var text = $"{reason}: {limit}" + (retryAfter is { } ra ? $"; retry after {Duration(ra)}" : string.Empty);
            using var bounded = CancellationTokenSource.CreateLinkedTokenSource(exchange.ClientAborted);
            bounded.CancelAfter(WebSocketCloseWait);
            try
            {
                await socket.CloseAsync(status == 429 ? WebSocketCloseStatus.PolicyViolation : (WebSocketCloseStatus)1013,
                    text.Length > 120 ? text[..120] : text, bounded.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or IOException)
            {
                // The client did not answer the Close in time, or went away: the connection ends either way.
            }

            return;
        }

        await ErrorResponses.WriteAsync(context, status, status == 429 ? StatusCode.ResourceExhausted : StatusCode.Unavailable,
            status == 429 ? "rate_limited" : "overloaded", reason, message, retryAfter ?? TimeSpan.FromSeconds(1), limit);
    }
}

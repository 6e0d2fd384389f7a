using Contracts.Wire;
using Gateway.Admin.Stats;
using Gateway.Forwarding;
using Gateway.Recording;
using Gateway.Telemetry;
using Grpc.Core;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Exchange;

/// <summary>
/// The one owner of an exchange's outcome, run by <see cref="ExchangeMiddleware"/> when the request path returns,
/// whatever happened:
/// <list type="number">
/// <item>decides the outcome and writes the gateway's own answer when one is due: a step's refusal
/// (<see cref="ExchangeContext.Answer"/>), 504 <c>route_timeout</c> when the route's timeout fired (never the 400 or 502
/// that YARP reports for a cancelled call), or a forwarding failure as an answer a client can act on (502
/// <c>backend_unreachable</c>, 503 <c>no_available_destination</c>, 504 <c>backend_timeout</c>, 413/400 for the
/// client's body); a client that went away is 499 (nginx's name) and gets nothing, except a WebSocket session in
/// which a close frame passed, from either side (<see cref="ExchangeContext.WebSocketClosed"/>): it completed, with its
/// 101 (or 200 over HTTP/2);</item>
/// <item>runs the exchange's finalizers (leases released, token charges reconciled, the breaker's verdict), each once,
/// in reverse order of registration;</item>
/// <item>counts and logs the exchange once (<c>gateway.*</c>, the GenAI conventions for an LLM exchange:
/// <see cref="Telemetry.GenAi.GenAiTelemetry"/>, and the dashboard's <see cref="TrafficHistory"/>), and hands the
/// recording taps' capture to the <see cref="RecordingSink"/>;</item>
/// <item>disposes of the response's usage meter, which the finalizers and the metrics read.</item>
/// </list>
/// </summary>
internal sealed partial class ExchangeCompletion
{
    /// <summary>Status recorded for an exchange whose client disconnected before it completed.</summary>
    public const int ClientClosedRequest = 499;

    private readonly GatewayMetrics _metrics;
    private readonly Telemetry.GenAi.GenAiTelemetry _genAi;
    private readonly TrafficHistory _history;
    private readonly Tenants.TenantMetrics _tenants;
    private readonly RecordingSink _sink;
    private readonly TimeProvider _time;
    private readonly ILogger _requestLog;
    private readonly ILogger _logger;
    private readonly LogThrottle _backendErrors;

    public ExchangeCompletion(GatewayMetrics metrics, Telemetry.GenAi.GenAiTelemetry genAi, TrafficHistory history, RecordingSink sink, TimeProvider time, ILoggerFactory loggerFactory, Tenants.TenantMetrics tenants)
    {
        _tenants = tenants;
        _metrics = metrics;
        _genAi = genAi;
        _history = history;
        _sink = sink;
        _time = time;
        _requestLog = loggerFactory.CreateLogger("Gateway.Requests");
        _logger = loggerFactory.CreateLogger<ExchangeCompletion>();
        _backendErrors = new LogThrottle(time, TimeSpan.FromSeconds(10));
    }

    /// <summary>Completes the exchange (see the type's remarks). Never throws for a finalizer's failure.</summary>
    public async Task CompleteAsync(HttpContext context, ExchangeContext exchange, string listenerTag)
    {
        try
        {
            await CompleteCoreAsync(context, exchange, listenerTag);
        }
        finally
        {
            exchange.Usage?.Dispose();
        }
    }

    private async Task CompleteCoreAsync(HttpContext context, ExchangeContext exchange, string listenerTag)
    {
        var outcome = await DecideAsync(context, exchange);
        var sent = outcome == ExchangeOutcome.ClientAbort ? ClientClosedRequest : context.Response.StatusCode;
        var result = new ExchangeResult(context, outcome, sent);
        // A backend that failed after the response started (a stream cut mid-way: the client got its 200 and a body that
        // breaks off) is counted, logged and judged as the failure it is, 502, not as the 200 that was sent (stranger
        // review of issue 14). The record keeps what the client saw, with its outcome.
        var status = outcome == ExchangeOutcome.BackendError && sent < 500 ? StatusCodes.Status502BadGateway : sent;
        exchange.Usage?.Finish(); // what the finalizers (token charges) and the GenAI metrics read

        var finalizers = exchange.Finalizers;
        for (var i = finalizers.Length - 1; i >= 0; i--)
        {
            try
            {
                await exchange.Finalizers[i].CompleteAsync(result);
            }
            catch (Exception ex)
            {
                Log.FinalizerFailed(_logger, exchange.Finalizers[i].GetType().Name, ex);
            }
        }

        _tenants.Completed(exchange, outcome, status);
        var classification = exchange.Classification;
        var elapsed = _time.GetElapsedTime(exchange.StartTimestamp);
        // A request refused before classification (authentication) still counts under its route.
        var routeTag = classification?.RouteId ?? context.Features.Get<Yarp.ReverseProxy.Model.IReverseProxyFeature>()?.Route.Config.RouteId ?? "(none)";
        // Time to first token: when a stream's response started (YARP sends the headers with the first body bytes).
        double? ttft = exchange.ResponseStarted != 0 && IsStream(context.Response.ContentType)
            ? _time.GetElapsedTime(exchange.StartTimestamp, exchange.ResponseStarted).TotalSeconds
            : null;
        // The gateway's own start-up warm-up is not client traffic: its own model label, no request log line, no
        // history (stranger review, issue 14: 200 warm-up requests showed as model="(unknown)" 404s and 200 log lines).
        var warmup = context.Request.Headers.TryGetValue(Hosting.Warmup.MarkerHeader, out var marker) && Hosting.Warmup.IsMarker(marker.ToString());
        _metrics.RequestCompleted(listenerTag, routeTag, status, elapsed.TotalSeconds, ttft,
            warmup ? Hosting.Warmup.ModelTag : Routing.ModelCatalog.Tag(classification?.Model, classification?.RequestedModel));
        // The model label is the model that served; a request served by a fallback is also counted by the model it
        // asked for (stranger review, issue 14: the fallback rate per requested model was invisible).
        if (!warmup && classification?.Model is { } served && classification.RequestedRoute is { } asked && !ReferenceEquals(asked, served))
        {
            _metrics.Fallback(asked.Name, served.Name);
        }

        if (warmup)
        {
            if (exchange.Capture is { } warmCapture)
            {
                _sink.Enqueue(warmCapture.Complete(context, exchange, result));
            }

            return;
        }

        _genAi.Record(context, exchange, outcome, status, elapsed.TotalSeconds);
        // Reconciled by a token policy, else what the backend reported to the response's usage meter (GenAI metrics).
        var tokens = exchange.Tokens ?? (exchange.Usage is { CompletionTokens: { } completion } usage ? (usage.PromptTokens ?? 0, completion) : null);
        // A WebSocket refused after its upgrade got 101 (200 over HTTP/2) and a close 1013/1008: the dashboard counts it
        // under the refusal's own status (503, 429), so totals.refused and the status mix agree with refused_by_limit
        // (stranger review of issue 16: 781 refused vs 794 by limit).
        var historyStatus = outcome == ExchangeOutcome.Answered && exchange.Answer is { RefuseUpgrade: false } refusal && status is 101 or 200
            && classification is { IsWebSocket: true } ? refusal.HttpStatus : status;
        _history.Record(new ExchangeSample(listenerTag, routeTag, classification?.Tenant?.Name ?? exchange.Caller?.Name, historyStatus, elapsed.TotalSeconds, ttft,
            outcome == ExchangeOutcome.Answered ? exchange.Answer?.Limit : null, exchange.QueueWait, tokens?.Prompt ?? 0, tokens?.Completion ?? 0));
        if (_requestLog.IsEnabled(LogLevel.Information))
        {
            Log.Request(_requestLog, listenerTag, context.Request.Method, context.Request.Path.Value ?? "/", routeTag, status, elapsed.TotalMilliseconds,
                outcome switch
                {
                    ExchangeOutcome.ClientAbort => " (client aborted)",
                    ExchangeOutcome.Timeout => " (route timeout)",
                    ExchangeOutcome.Answered => $" ({exchange.Answer!.Code})",
                    ExchangeOutcome.BackendError when sent != status => $" (backend failed after the response started; the client got {sent} and a cut body)",
                    _ => string.Empty,
                });
        }

        if (exchange.Capture is { } capture)
        {
            _sink.Enqueue(capture.Complete(context, exchange, result));
        }
    }

    private async ValueTask<ExchangeOutcome> DecideAsync(HttpContext context, ExchangeContext exchange)
    {
        // A WebSocket session in which a close frame passed ended by the protocol: the client then closes its connection
        // (RFC 6455 §7.1.1; the replay tool did so right after its own 1000), which fires the abort token, but it left
        // nothing unfinished (issue 16: 23 of the demo's 24 sessions closed with 1000 were counted and recorded as 499).
        var closedSession = exchange.WebSocketClosed;
        // YARP aborts the client's connection itself when the backend breaks off a response it had started (HTTP/1.1: a
        // chunked body must not end cleanly), which fires the same abort token: that is the backend's failure, not the
        // client leaving (the HTTP/1.1 half of the stranger review's "stream cut by the backend counted as 200").
        var backendBrokeOff = context.Features.Get<IForwarderErrorFeature>() is { Error: ForwarderError.ResponseBodyDestination };
        if (exchange.IsClientAbort && !closedSession && !backendBrokeOff)
        {
            return ExchangeOutcome.ClientAbort;
        }

        if (exchange.Failure is { } failure)
        {
            Log.Unhandled(_logger, context.Request.Method, context.Request.Path.Value ?? "/", failure);
            await ErrorResponses.WriteAsync(context, StatusCodes.Status500InternalServerError, StatusCode.Internal, GatewayErrorTypes.GatewayError, GatewayErrorCodes.InternalError,
                "The gateway failed while handling this request; the failure is logged.");
            return ExchangeOutcome.GatewayError;
        }

        if (exchange.Answer is { } answer)
        {
            await answer.WriteAsync(context, exchange);
            // A WebSocket refused with a close frame stays refused when its client then drops the connection without
            // answering the close (stranger review of issue 16: such sessions were recorded as client aborts).
            return exchange.IsClientAbort && !exchange.WebSocketClosed ? ExchangeOutcome.ClientAbort : ExchangeOutcome.Answered;
        }

        if (exchange.Classification is not { } classification)
        {
            return ExchangeOutcome.Completed; // no route (answered 404 by the gateway), or an admin endpoint
        }

        if (closedSession)
        {
            return ExchangeOutcome.Completed; // what the sockets did after the closing handshake is not the session's outcome
        }

        if (classification.RouteTimeout.IsCancellationRequested)
        {
            await ErrorResponses.WriteAsync(context, StatusCodes.Status504GatewayTimeout, StatusCode.DeadlineExceeded, GatewayErrorTypes.Timeout, GatewayErrorCodes.RouteTimeout,
                $"The model server did not complete within the route's timeout ({classification.Route.Timeout}).");
            return ExchangeOutcome.Timeout;
        }

        if (context.Features.Get<IForwarderErrorFeature>() is not { Error: not ForwarderError.None } error)
        {
            return ExchangeOutcome.Completed;
        }

        var clientSide = ForwarderErrors.IsClientSide(error.Error, error.Exception);
        var cluster = classification.ClusterId ?? "?";
        if (!clientSide && _backendErrors.ShouldLog((cluster, error.Error.ToString()), out var suppressed))
        {
            Log.BackendFailed(_logger, cluster, error.Error.ToString(), error.Exception?.GetBaseException().Message ?? "no detail", suppressed);
        }

        if (!context.Response.HasStarted)
        {
            await WriteForwarderErrorAsync(context, error.Error, cluster);
        }

        return clientSide ? ExchangeOutcome.ClientError : ExchangeOutcome.BackendError;
    }

    private static Task WriteForwarderErrorAsync(HttpContext context, ForwarderError error, string cluster) => error switch
    {
        ForwarderError.NoAvailableDestinations => ErrorResponses.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, StatusCode.Unavailable,
            GatewayErrorTypes.Unavailable, GatewayErrorCodes.NoAvailableDestination, $"No healthy model server in cluster '{cluster}'.", TimeSpan.FromSeconds(1)),
        ForwarderError.RequestTimedOut => ErrorResponses.WriteAsync(context, StatusCodes.Status504GatewayTimeout, StatusCode.DeadlineExceeded,
            GatewayErrorTypes.Timeout, GatewayErrorCodes.BackendTimeout, $"The model server in cluster '{cluster}' was silent for longer than the cluster's activity timeout."),
        ForwarderError.RequestBodyClient when context.Response.StatusCode == StatusCodes.Status413PayloadTooLarge => ErrorResponses.WriteAsync(context,
            StatusCodes.Status413PayloadTooLarge, StatusCode.ResourceExhausted, GatewayErrorTypes.InvalidRequest, GatewayErrorCodes.RequestTooLarge,
            "The request body is larger than the gateway accepts (Gateway:Limits:MaxRequestBodyBytes)."),
        ForwarderError.RequestBodyClient => ErrorResponses.WriteAsync(context, StatusCodes.Status400BadRequest, StatusCode.InvalidArgument,
            GatewayErrorTypes.InvalidRequest, GatewayErrorCodes.BadRequestBody, "The request body could not be read (the client sent an invalid or incomplete body)."),
        ForwarderError.Request or ForwarderError.RequestCreation or ForwarderError.ResponseHeaders => ErrorResponses.WriteAsync(context,
            StatusCodes.Status502BadGateway, StatusCode.Unavailable, GatewayErrorTypes.BadGateway, GatewayErrorCodes.BackendUnreachable,
            $"The model server in cluster '{cluster}' could not be reached or gave an invalid answer."),
        // Any other failure before the response started keeps YARP's status (400 for the client's body, 502 for the
        // backend's), with the gateway's JSON body: no error answer of the gateway is ever empty.
        _ when context.Response.StatusCode >= 500 => ErrorResponses.WriteAsync(context, StatusCodes.Status502BadGateway, StatusCode.Unavailable,
            "bad_gateway", "backend_error", $"The model server in cluster '{cluster}' failed during the exchange ({error})."),
        _ when context.Response.StatusCode >= 400 => ErrorResponses.WriteAsync(context, context.Response.StatusCode, StatusCode.InvalidArgument,
            "invalid_request_error", "bad_request_body", $"The request could not be forwarded as sent ({error})."),
        _ => Task.CompletedTask,
    };

    private static bool IsStream(string? contentType) =>
        contentType is not null
        && (contentType.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase) || contentType.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase));

    private static partial class Log
    {
        [LoggerMessage(EventId = 1001, Level = LogLevel.Information,
            Message = "{Listener} {Method} {Path} route={Route} status={Status} duration={DurationMs:F1}ms{Note}")]
        public static partial void Request(ILogger logger, string listener, string method, string path, string route, int status, double durationMs, string note);

        [LoggerMessage(EventId = 2001, Level = LogLevel.Warning, Message = "Backend failure in cluster {Cluster}: {Error}: {Reason} ({Suppressed} more since the last line).")]
        public static partial void BackendFailed(ILogger logger, string cluster, string error, string reason, long suppressed);

        [LoggerMessage(EventId = 1003, Level = LogLevel.Error, Message = "Unhandled failure while handling {Method} {Path}.")]
        public static partial void Unhandled(ILogger logger, string method, string path, Exception exception);

        [LoggerMessage(EventId = 1002, Level = LogLevel.Error, Message = "Completing an exchange failed in {Finalizer}.")]
        public static partial void FinalizerFailed(ILogger logger, string finalizer, Exception exception);
    }
}

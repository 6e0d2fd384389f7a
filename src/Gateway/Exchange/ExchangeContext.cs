using Gateway.Listeners;
using Gateway.Recording.Capture;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace Gateway.Exchange;

/// <summary>
/// One small object per request, stored as an <see cref="HttpContext"/> feature: created by
/// <see cref="ExchangeMiddleware"/> before routing, given its <see cref="Classification"/> once by
/// <see cref="ClassifyStep"/>, and completed by <see cref="ExchangeCompletion"/>, the one owner of the outcome. Steps
/// never write a fact of the request here; they only leave what completion must act on: a gateway
/// <see cref="Answer"/> (a refusal), work to finish (<see cref="OnCompleted"/>: leases, token charges) and the taps to
/// install before forwarding (<see cref="Capture"/>, <see cref="ResponseBody"/>, <see cref="Connection"/>).
/// </summary>
internal sealed class ExchangeContext
{
    private IExchangeFinalizer[]? _finalizers;
    private int _finalizerCount;
    private bool _stripUsage;

    /// <summary>The listener the connection arrived on.</summary>
    public ListenerName Listener { get; init; }

    /// <summary>Monotonic timestamp (<see cref="TimeProvider.GetTimestamp"/>) when the gateway began the exchange.</summary>
    public long StartTimestamp { get; init; }

    /// <summary>Wall-clock start of the exchange.</summary>
    public DateTimeOffset StartTime { get; init; }

    /// <summary>The clock of <see cref="StartTimestamp"/>.</summary>
    public required TimeProvider Time { get; init; }

    /// <summary>
    /// The connection's own abort token, captured before any middleware (request timeouts) links it to another
    /// token: it fires only when the client went away, which is how a client abort (499) is told from a timeout.
    /// </summary>
    public CancellationToken ClientAborted { get; init; }

    /// <summary>True when the client went away before the exchange completed.</summary>
    public bool IsClientAbort => ClientAborted.IsCancellationRequested;

    /// <summary>
    /// True once a WebSocket session's closing handshake began through the gateway: a close frame passed from the client
    /// to the backend or from the backend to the client (RFC 6455 §5.5.1, §7.1.2). The session then ended by the
    /// protocol, and the client closing its connection afterwards (at once after its own close frame, as many clients
    /// do, or after the server's answer, as §7.1.1 asks) is not a client abort; a connection dropped with no close frame
    /// is. Set by the connection filter (<see cref="Forwarding.WebSocketIdleTimeout"/>), read by completion.
    /// </summary>
    public bool WebSocketClosed => Volatile.Read(ref _webSocketClosed) != 0;

    private int _webSocketClosed;

    /// <summary>Notes that a close frame passed (see <see cref="WebSocketClosed"/>).</summary>
    public void MarkWebSocketClosed() => Volatile.Write(ref _webSocketClosed, 1);

    /// <summary>
    /// The authenticated caller, found by the authentication step (<see cref="Tenants.AuthStep"/>) before
    /// classification, which makes it <see cref="Classification.Tenant"/>; null when authentication is off or the route
    /// needs none. Never a credential.
    /// </summary>
    public Tenants.Tenant? Caller { get; internal set; }

    /// <summary>The request's classification, once a route matched; null for requests no route took.</summary>
    public Classification? Classification { get; private set; }

    /// <summary>Monotonic timestamp when the response started (headers and first body bytes sent); 0 until then.</summary>
    public long ResponseStarted { get; internal set; }

    /// <summary>The answer the gateway itself gives instead of forwarding (a refusal, a bad request); null when none.</summary>
    public GatewayAnswer? Answer { get; private set; }

    /// <summary>The recording taps of this exchange, when a recording takes it; installed outermost before forwarding.</summary>
    public ExchangeCapture? Capture { get; private set; }

    /// <summary>A response body filter (token usage metering), installed inside the capture taps before forwarding.</summary>
    public Func<IHttpResponseBodyFeature, IHttpResponseBodyFeature>? ResponseBody { get; private set; }

    /// <summary>
    /// The response's usage meter (token usage, response model, first-token time), once installed before forwarding
    /// because a step asked for it (<see cref="MeterUsage"/>); null otherwise. Owned by the exchange: completion reads it
    /// (<see cref="Shaping.Tokens.UsageMeter.Finish"/>) before the finalizers and disposes of it last.
    /// </summary>
    public Shaping.Tokens.UsageMeter? Usage { get; private set; }

    /// <summary>
    /// Told of each output token (SSE content chunk, gRPC token message) as the usage meter sees it delivered: the
    /// admission lease, which charges it to its key's fair-share counter as it is generated. Null when none.
    /// </summary>
    public Shaping.Tokens.IOutputTokenSink? OutputTokens { get; internal set; }

    /// <summary>Whether a step asked for the response's usage to be metered (<see cref="MeterUsage"/>).</summary>
    public bool UsageRequested { get; private set; }

    /// <summary>Whether a step asked the backend for the usage of a stream the client did not ask for, so that it is removed from the answer.</summary>
    public bool StripsUsage => _stripUsage;

    /// <summary>
    /// A WebSocket connection filter (message limits, idle timeout) over the client's side of the session, installed
    /// inside the capture taps before forwarding, on an HTTP/1.1 upgrade and an HTTP/2 extended CONNECT alike.
    /// </summary>
    public Func<Stream, Stream>? Connection { get; private set; }

    /// <summary>
    /// How many characters of the prompt's leading text the destination chosen by the <c>InferenceAware</c> policy had
    /// recently served (a multiple of 64; 0 for none); null when that policy did not choose one. For the record.
    /// </summary>
    public int? PrefixMatchChars { get; internal set; }

    /// <summary>
    /// How long the exchange waited in its cluster's admission queue (<c>TimeSpan.Zero</c> when admitted at once), set by
    /// the admission step whether it was then admitted or refused; null when no admission control applied.
    /// </summary>
    public TimeSpan? QueueWait { get; internal set; }

    /// <summary>
    /// Prompt and completion tokens as the token accounting settled them when the exchange completed (the usage the
    /// backend reported, or for a stream cut short the chunks delivered); null when no token policy counted the exchange
    /// or nothing better than the estimate was known.
    /// </summary>
    public (long Prompt, long Completion)? Tokens { get; internal set; }

    /// <summary>
    /// The admission lease of the cluster now serving the exchange (set by <c>ClusterAdmission</c>), or null when its
    /// cluster has no admission; replaced when a model's fallback cluster admits it after a failed forward.
    /// </summary>
    internal Shaping.AdmissionRelease? Admission { get; set; }

    /// <summary>An exception that escaped the request path (a bug), or null.</summary>
    public Exception? Failure { get; private set; }

    /// <summary>Records an exception that escaped the request path; completion answers 500 <c>internal_error</c>.</summary>
    public void Fail(Exception exception) => Failure ??= exception;

    /// <summary>Sets the classification; called once, by <see cref="ClassifyStep"/>.</summary>
    /// <exception cref="InvalidOperationException">The exchange was already classified.</exception>
    public void Classify(Classification classification)
    {
        if (Classification is not null)
        {
            throw new InvalidOperationException("The exchange is already classified.");
        }

        Classification = classification;
    }

    /// <summary>
    /// Ends the request path with the gateway's own answer: the step that calls it returns without calling the next
    /// step, and <see cref="ExchangeCompletion"/> writes the answer in the protocol's terms. The first answer wins.
    /// </summary>
    public void Refuse(GatewayAnswer answer) => Answer ??= answer;

    /// <summary>Registers the recording taps (one capture per exchange).</summary>
    public void SetCapture(ExchangeCapture capture) => Capture = capture;

    /// <summary>Registers a response body filter; filters registered later sit closer to the forwarder.</summary>
    public void FilterResponseBody(Func<IHttpResponseBodyFeature, IHttpResponseBodyFeature> filter)
    {
        var previous = ResponseBody;
        ResponseBody = previous is null ? filter : inner => filter(previous(inner));
    }

    /// <summary>
    /// Asks for the response's usage to be metered (<see cref="Usage"/>): by the token step (to reconcile its charges)
    /// and for the GenAI metrics of an LLM exchange. One meter serves every asker; it strips the usage the client did
    /// not ask for when any asker says so (<paramref name="stripUsage"/>: the gateway itself asked the stream for it).
    /// </summary>
    public void MeterUsage(bool stripUsage)
    {
        UsageRequested = true;
        _stripUsage |= stripUsage;
    }

    /// <summary>
    /// Installs the usage meter over <paramref name="inner"/> when one was asked for (<see cref="MeterUsage"/>), once;
    /// returns the feature the forwarder writes to. Called by the forwarding step, innermost of the response filters.
    /// </summary>
    internal IHttpResponseBodyFeature InstallUsageMeter(HttpContext context, IHttpResponseBodyFeature inner)
    {
        if (!UsageRequested || Usage is not null)
        {
            return inner;
        }

        Usage = new Shaping.Tokens.UsageMeter(context, inner, _stripUsage, Time);
        return Usage;
    }

    /// <summary>Registers a WebSocket connection filter; filters registered later sit closer to the forwarder.</summary>
    public void FilterConnection(Func<Stream, Stream> filter)
    {
        var previous = Connection;
        Connection = previous is null ? filter : inner => filter(previous(inner));
    }

    /// <summary>
    /// Registers work that must run when the exchange ends, whatever its outcome (a lease to release, a token charge to
    /// reconcile). Completion runs them in reverse order of registration, each once.
    /// </summary>
    public void OnCompleted(IExchangeFinalizer finalizer)
    {
        _finalizers ??= new IExchangeFinalizer[4];
        if (_finalizerCount == _finalizers.Length)
        {
            Array.Resize(ref _finalizers, _finalizers.Length * 2);
        }

        _finalizers[_finalizerCount++] = finalizer;
    }

    /// <summary>The registered finalizers, in registration order.</summary>
    internal ReadOnlySpan<IExchangeFinalizer> Finalizers => _finalizers.AsSpan(0, _finalizerCount);
}

/// <summary>Work that runs when an exchange ends (see <see cref="ExchangeContext.OnCompleted"/>).</summary>
internal interface IExchangeFinalizer
{
    /// <summary>Called once, by <see cref="ExchangeCompletion"/>, after the answer was written; must not throw.</summary>
    ValueTask CompleteAsync(ExchangeResult result);
}

/// <summary>How an exchange ended, as <see cref="ExchangeCompletion"/> decided it.</summary>
/// <param name="Context">The request.</param>
/// <param name="Outcome">What happened.</param>
/// <param name="Status">The status the client got (499 when it went away first; 200 for a gRPC call's trailers-only error).</param>
internal readonly record struct ExchangeResult(HttpContext Context, ExchangeOutcome Outcome, int Status)
{
    /// <summary>Whether the request reached the backend and got an answer it did not fail (below 500).</summary>
    public bool BackendSucceeded => Outcome == ExchangeOutcome.Completed && Status < 500;
}

/// <summary>The outcome of an exchange.</summary>
internal enum ExchangeOutcome
{
    /// <summary>Forwarded, and the backend's answer relayed (whatever its status).</summary>
    Completed,

    /// <summary>The gateway answered itself (<see cref="ExchangeContext.Answer"/>): a refusal or a bad request.</summary>
    Answered,

    /// <summary>The client went away before the exchange completed (499).</summary>
    ClientAbort,

    /// <summary>The route's timeout ended it (504, or a reset stream after the response started).</summary>
    Timeout,

    /// <summary>Forwarding failed on the backend's side (unreachable, no destination, silent past its activity timeout).</summary>
    BackendError,

    /// <summary>The gateway failed (an exception escaped the request path): 500 <c>internal_error</c>.</summary>
    GatewayError,

    /// <summary>Forwarding failed on the client's side (an unreadable or oversized request body).</summary>
    ClientError,
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

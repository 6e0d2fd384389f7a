using Gateway.Listeners;
using Gateway.Recording;
using Gateway.Shaping;
using Gateway.Shaping.Tokens;
using Yarp.ReverseProxy.Configuration;

namespace Gateway.Exchange;

/// <summary>
/// What the gateway knows of a request, found once, right after routing, by <see cref="ClassifyStep"/>, and read by
/// every later step: the listener, the protocol, the route and cluster, the client key and the route's
/// <see cref="RoutePlan"/> (which steps apply, decided when the configuration loaded). The session id, the request body
/// and the LLM request it holds (model, max_tokens, stream, prompt size) are found lazily, the first time a step asks,
/// and at most once: nothing writes a fact twice.
/// </summary>
internal sealed class Classification
{
    private readonly HttpContext _context;
    private readonly ExchangeProtocol _protocol;
    private readonly SessionResolver _sessions;
    private ReadOnlyMemory<byte>? _body;
    private LlmRequest? _llm;
    private string? _sessionId;
    private string? _promptText;
    private bool _promptTextRead;

    private string? _clientKey;

    private bool _resolved;

    public Classification(HttpContext context, ListenerName listener, ExchangeProtocol protocol, RouteConfig route, SessionResolver sessions)
    {
        _context = context;
        Listener = listener;
        _protocol = protocol;
        Route = route;
        ClusterId = route.ClusterId;
        Plan = RoutePlan.Empty;
        _sessions = sessions;
        // The route's timeout, as ASP.NET Core's request timeouts set it up for this request (its token stays readable
        // after the timeouts middleware has returned, when completion asks whether it fired).
        RouteTimeout = context.Features.Get<Microsoft.AspNetCore.Http.Timeouts.IHttpRequestTimeoutFeature>()?.RequestTimeoutToken ?? CancellationToken.None;
        GenAiOperation = Telemetry.GenAi.GenAiOperations.Of(context.Request.Method, context.Request.Path, protocol);
    }

    /// <summary>
    /// The GenAI operation (<c>chat</c>, <c>text_completion</c>, <c>embeddings</c>; <see cref="Telemetry.GenAi.GenAiOperations"/>)
    /// when the exchange is an LLM exchange, else null: what the GenAI metrics and span attributes are recorded for.
    /// </summary>
    public string? GenAiOperation { get; }

    /// <summary>Fires when the route's <c>Timeout</c> ends the exchange; <see cref="CancellationToken.None"/> without one.</summary>
    public CancellationToken RouteTimeout { get; }

    /// <summary>The listener the connection arrived on.</summary>
    public ListenerName Listener { get; }

    /// <summary>
    /// The protocol: from the request's headers, except that an HTTP request whose OpenAI body asks for
    /// <c>"stream": true</c> is <see cref="ExchangeProtocol.Sse"/> once its body has been read.
    /// </summary>
    public ExchangeProtocol Protocol => _protocol == ExchangeProtocol.Http && _llm is { Stream: true } ? ExchangeProtocol.Sse : _protocol;

    /// <summary>Whether the exchange is a WebSocket session (over HTTP/1.1 or HTTP/2).</summary>
    public bool IsWebSocket => _protocol.IsWebSocket();

    /// <summary>Whether the exchange is a gRPC call.</summary>
    public bool IsGrpc => _protocol == ExchangeProtocol.Grpc;

    /// <summary>The YARP route that matched.</summary>
    public RouteConfig Route { get; }

    /// <summary>The route's id.</summary>
    public string RouteId => Route.RouteId;

    /// <summary>The cluster the exchange is forwarded to: the model's (<see cref="Model"/>), else the route's; null for a route without one.</summary>
    public string? ClusterId { get; private set; }

    /// <summary>The configured model the request was routed by (after an alias or a fallback), or null.</summary>
    public Routing.ModelRoute? Model { get; private set; }

    /// <summary>The model name as the client sent it, or null when it named none.</summary>
    public string? RequestedModel { get; private set; }

    /// <summary>
    /// The configured model <see cref="RequestedModel"/> names (by name or alias), looked up once by
    /// <see cref="ClassifyStep"/>; null when it named none or one that is not configured. Before any fallback:
    /// <see cref="Model"/> is what serves.
    /// </summary>
    public Routing.ModelRoute? RequestedRoute { get; private set; }

    /// <summary>The request body as forwarded when a step replaced it (a model name rewritten), else null (forwarded as sent).</summary>
    public ReadOnlyMemory<byte>? ForwardedBody { get; private set; }

    /// <summary>
    /// The client key (<see cref="Exchange.ClientKey"/>): a hashed API key or the client's address; never a secret.
    /// Found the first time it is read (hashing a key costs, and a route with no policy and no recording never reads it).
    /// </summary>
    public string ClientKey => _clientKey ??= Exchange.ClientKey.Of(_context);

    /// <summary>The steps that apply to this route and cluster, decided when the configuration loaded.</summary>
    public RoutePlan Plan { get; private set; }

    /// <summary>The authenticated caller (found by the authentication step, set when the exchange is classified), or null when authentication is off, or the route needs none and none was sent.</summary>
    public Tenants.Tenant? Tenant { get; internal set; }

    /// <summary>The session id once some step asked for it (<see cref="GetSessionIdAsync"/>); null until then.</summary>
    public string? SessionId => _sessionId;

    /// <summary>
    /// The request body as the client sent it, once a step has read it (<see cref="GetBodyAsync"/>): empty when the body
    /// was too large to inspect or could not be read whole; null until read.
    /// </summary>
    public ReadOnlyMemory<byte>? Body => _body;

    /// <summary>
    /// True when the body was read (<see cref="GetBodyAsync"/>) but not inspected: it was longer than the inspect limit
    /// (<c>Gateway:Shaping:MaxInspectBytes</c>) or reading it failed, so <see cref="Body"/> is empty though the request had one.
    /// </summary>
    public bool BodyUninspected { get; private set; }

    /// <summary>The LLM request, once a step has parsed it (<see cref="GetLlmRequestAsync"/>); null until then.</summary>
    public LlmRequest? Llm => _llm;

    /// <summary>
    /// The prompt's chat text (each message's role and content in order, or the completion or gRPC prompt; at most
    /// <see cref="Routing.InferenceAware.PromptPrefix.MaxChars"/> characters), what prefix affinity hashes. Computed once,
    /// from <see cref="Body"/>, the first time it is read after the body was; null before that, and for a body with no prompt.
    /// </summary>
    public string? PromptText
    {
        get
        {
            if (!_promptTextRead && _body is { } body)
            {
                _promptText = IsGrpc ? Routing.InferenceAware.PromptPrefix.FromGrpc(body.Span) : Routing.InferenceAware.PromptPrefix.FromJson(body.Span);
                _promptTextRead = true;
            }

            return _promptText;
        }
    }

    /// <summary>
    /// Sets where the exchange goes: the model it was routed by (if any), the cluster and that cluster's shaping plan.
    /// Called once, by <see cref="ClassifyStep"/>, before any later step runs.
    /// </summary>
    /// <exception cref="InvalidOperationException">Already resolved.</exception>
    public void Resolve(Routing.ModelRoute? model, string? requestedModel, string? clusterId, RoutePlan plan, Routing.ModelRoute? requestedRoute = null)
    {
        if (_resolved)
        {
            throw new InvalidOperationException("The exchange's destination is already resolved.");
        }

        _resolved = true;
        Model = model;
        RequestedModel = requestedModel;
        RequestedRoute = requestedRoute;
        ClusterId = clusterId;
        Plan = plan;
    }

    /// <summary>Records the body that is forwarded in place of the client's (see <see cref="ForwardedBody"/>), and forwards it.</summary>
    public void ReplaceBody(byte[] body)
    {
        ForwardedBody = body;
        _context.Request.Body = new MemoryStream(body, writable: false);
        _context.Request.ContentLength = body.Length;
    }

    /// <summary>Moves the exchange to a fallback model's cluster after forwarding to the first failed before any answer (see <c>ForwardStep</c>).</summary>
    internal void FallBack(Routing.ModelRoute model, string? clusterId)
    {
        Model = model;
        ClusterId = clusterId;
    }

    /// <summary>The session id (configured sources in order, else generated), resolved once.</summary>
    public ValueTask<string> GetSessionIdAsync(CancellationToken cancellationToken) =>
        _sessionId is { } known ? ValueTask.FromResult(known) : ResolveSessionAsync(cancellationToken);

    /// <summary>
    /// The request body, read at most once (up to <paramref name="maxBytes"/>) without changing a byte of what is
    /// forwarded (<see cref="RequestBody.ReadAsync"/>).
    /// </summary>
    /// <param name="maxBytes">The most bytes inspected; a longer body is forwarded whole and reads as empty here.</param>
    /// <param name="jsonOnly">When true, a body that is not JSON (by content type) is not read and reads as empty.</param>
    /// <param name="cancellationToken">The client's abort.</param>
    public async ValueTask<ReadOnlyMemory<byte>> GetBodyAsync(int maxBytes, bool jsonOnly, CancellationToken cancellationToken)
    {
        if (_body is { } read)
        {
            return read;
        }

        if (jsonOnly && !RequestBody.IsJson(_context.Request.ContentType))
        {
            return ReadOnlyMemory<byte>.Empty;
        }

        var (body, whole) = await RequestBody.ReadInspectedAsync(_context, maxBytes, cancellationToken);
        _body = body;
        BodyUninspected = !whole;
        return body;
    }

    /// <summary>
    /// The LLM request (prompt tokens, max_tokens, stream, include_usage), parsed once with a JSON reader from an
    /// OpenAI-style body, or from an <c>inference.v1</c> gRPC request.
    /// </summary>
    public async ValueTask<LlmRequest> GetLlmRequestAsync(int maxInspectBytes, int defaultMaxTokens, CancellationToken cancellationToken)
    {
        if (_llm is { } parsed)
        {
            return parsed;
        }

        var body = await GetBodyAsync(maxInspectBytes, jsonOnly: !IsGrpc, cancellationToken);
        _llm = IsGrpc ? LlmRequest.FromGrpc(body.Span, defaultMaxTokens) : LlmRequest.FromJson(body.Span, defaultMaxTokens);
        return _llm;
    }

    private async ValueTask<string> ResolveSessionAsync(CancellationToken cancellationToken)
    {
        var id = await _sessions.ResolveAsync(_context, this, cancellationToken);
        _sessionId = id;
        return id;
    }
}

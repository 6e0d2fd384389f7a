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

    private string? _clientKey;

    public Classification(HttpContext context, ListenerName listener, ExchangeProtocol protocol, RouteConfig route, RoutePlan plan, SessionResolver sessions)
    {
        _context = context;
        Listener = listener;
        _protocol = protocol;
        Route = route;
        Plan = plan;
        _sessions = sessions;
        // The route's timeout, as ASP.NET Core's request timeouts set it up for this request (its token stays readable
        // after the timeouts middleware has returned, when completion asks whether it fired).
        RouteTimeout = context.Features.Get<Microsoft.AspNetCore.Http.Timeouts.IHttpRequestTimeoutFeature>()?.RequestTimeoutToken ?? CancellationToken.None;
    }

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

    /// <summary>The cluster the route forwards to, or null.</summary>
    public string? ClusterId => Route.ClusterId;

    /// <summary>
    /// The client key (<see cref="Exchange.ClientKey"/>): a hashed API key or the client's address; never a secret.
    /// Found the first time it is read (hashing a key costs, and a route with no policy and no recording never reads it).
    /// </summary>
    public string ClientKey => _clientKey ??= Exchange.ClientKey.Of(_context);

    /// <summary>The steps that apply to this route, decided when the configuration loaded.</summary>
    public RoutePlan Plan { get; }

    /// <summary>The session id once some step asked for it (<see cref="GetSessionIdAsync"/>); null until then.</summary>
    public string? SessionId => _sessionId;

    /// <summary>
    /// The request body as the client sent it, once a step has read it (<see cref="GetBodyAsync"/>): empty when the body
    /// was too large to inspect or could not be read whole; null until read.
    /// </summary>
    public ReadOnlyMemory<byte>? Body => _body;

    /// <summary>The LLM request, once a step has parsed it (<see cref="GetLlmRequestAsync"/>); null until then.</summary>
    public LlmRequest? Llm => _llm;

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

        var body = await RequestBody.ReadAsync(_context, maxBytes, cancellationToken);
        _body = body;
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

using Contracts.Recording;
using Gateway.Exchange;
using Gateway.Listeners;
using Microsoft.AspNetCore.Http.Features;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Recording.Capture;

/// <summary>
/// The taps of one recorded exchange: request body, response body and, after a WebSocket upgrade, both directions
/// of the connection. Installed before forwarding, completed after it; bytes are copied as they stream by and never
/// held back.
/// </summary>
internal sealed class ExchangeCapture : IDisposable
{
    private readonly TimeProvider _time;
    private readonly BodyCapture _requestBody;
    private readonly BodyCapture _responseBody;
    private readonly UnitCollector _units;
    private GrpcUnits? _requestMessages;
    private SseUnits? _responseEvents;
    private GrpcUnits? _responseMessages;
    private WebSocketUnits? _fromClient;
    private WebSocketUnits? _toClient;
    private RecordedTokens? _tokens;
    private bool _responseInspected;
    private long _firstByte;
    private bool _upgraded;
    private HttpContext? _context;
    private Version? _backendVersion;
    private RecordedHeader[] _requestHeaders = [];

    private readonly IReadOnlyList<(string Recording, long Sequence)> _targets;

    /// <summary>Takes the exchange for the recordings; the request's headers are copied now, as the client sent them.</summary>
    public ExchangeCapture(RecordingOptions options, TimeProvider time, IReadOnlyList<(string Recording, long Sequence)> targets, HttpContext context)
    {
        _time = time;
        _targets = targets;
        _requestHeaders = Copy(context.Request.Headers);
        _requestBody = new BodyCapture(options.MaxBodyBytes);
        _responseBody = new BodyCapture(options.MaxBodyBytes);
        _units = new UnitCollector(options.MaxUnits, options.MaxBodyBytes, time);
    }

    /// <summary>
    /// Installs the taps on the request, outermost (called by the forwarding step, after every other step, so the taps
    /// see what the client sent and what it receives). The request is recorded as the client sent it: its headers as
    /// they were when the capture took the exchange, and its body from the tap, or from <see cref="Classification.Body"/> when a step has already read
    /// all of it (a step may then forward another body in its place, such as a token limit's
    /// <c>stream_options.include_usage</c> rewrite, which the tap would never see).
    /// </summary>
    public void Install(HttpContext context, Classification classification)
    {
        _context = context;
        var request = context.Request;
        if (classification.IsGrpc)
        {
            _requestMessages = new GrpcUnits(_units, Directions.ToServer);
        }

        if (classification.Body is { Length: > 0 } read)
        {
            OnRequestBytes(read.Span);
        }
        else
        {
            request.Body = new ReadTapStream(request.Body, OnRequestBytes);
        }

        var body = context.Features.Get<IHttpResponseBodyFeature>()!;
        context.Features.Set<IHttpResponseBodyFeature>(new TapResponseBodyFeature(body, OnResponseBytes));

        if (context.Features.Get<IHttpUpgradeFeature>() is { IsUpgradableRequest: true } upgrade)
        {
            var fromClient = _fromClient = new WebSocketUnits(_units, Directions.ToServer);
            var toClient = _toClient = new WebSocketUnits(_units, Directions.ToClient);
            context.Features.Set<IHttpUpgradeFeature>(new TapUpgradeFeature(upgrade, fromClient.Append, b => { MarkFirstByte(); toClient.Append(b); }, () => _upgraded = true));
        }
        else if (context.Features.Get<IHttpExtendedConnectFeature>() is { IsExtendedConnect: true } connect)
        {
            // A WebSocket over HTTP/2 (RFC 8441): the same frames on the accepted stream of the CONNECT.
            var fromClient = _fromClient = new WebSocketUnits(_units, Directions.ToServer);
            var toClient = _toClient = new WebSocketUnits(_units, Directions.ToClient);
            context.Features.Set<IHttpExtendedConnectFeature>(new TapExtendedConnectFeature(connect, fromClient.Append, b => { MarkFirstByte(); toClient.Append(b); }, () => _upgraded = true));
        }
    }

    /// <summary>
    /// Notes the HTTP version of the backend's response (called by <see cref="BackendVersionTransform"/> when YARP has
    /// the response headers; never called when no response came).
    /// </summary>
    public void OnBackendResponse(Version version) => _backendVersion = version;

    private void OnRequestBytes(ReadOnlySpan<byte> data)
    {
        _requestBody.Append(data);
        _requestMessages?.Append(data);
    }

    private void OnResponseBytes(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        MarkFirstByte();
        if (!_responseInspected)
        {
            _responseInspected = true;
            var contentType = _context?.Response.ContentType;
            if (contentType is not null && contentType.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase))
            {
                _responseEvents = new SseUnits(_units);
            }
            else if (contentType is not null && contentType.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase))
            {
                _responseMessages = new GrpcUnits(_units, Directions.ToClient);
            }
        }

        _responseBody.Append(data);
        _responseEvents?.Append(data);
        _responseMessages?.Append(data);
    }

    private void MarkFirstByte()
    {
        if (_firstByte == 0)
        {
            _firstByte = _time.GetTimestamp();
        }
    }

    /// <summary>
    /// The tokens the exchange cost, as the token step reconciled them (called before <see cref="Complete"/>, by a
    /// finalizer); a record without them has no <c>tokens</c>.
    /// </summary>
    public void SetTokens(RecordedTokens tokens) => _tokens = tokens;

    /// <summary>
    /// Notes the close frame the gateway itself sent on a WebSocket it accepted only to refuse
    /// (<see cref="GatewayAnswer"/>): the record then shows the refusal as a close unit to the client,
    /// <c>"1013 reason"</c>, as the taps record a backend's close. The taps are not installed on a refused exchange.
    /// </summary>
    /// <param name="status">The close status (1013 or 1008).</param>
    /// <param name="reason">The close reason the client read.</param>
    public void GatewayClosedWebSocket(int status, string reason)
    {
        _upgraded = true;
        var text = System.Text.Encoding.UTF8.GetBytes(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{status} {reason}"));
        if (_firstByte == 0)
        {
            _firstByte = _time.GetTimestamp();
        }

        _units.Add(Directions.ToClient, UnitKinds.Close, text, text.Length);
    }

    /// <summary>
    /// Copies what the exchange was (headers, status, trailers, taps, timings) into a <see cref="CapturedExchange"/>
    /// that outlives the request.
    /// </summary>
    public CapturedExchange Complete(HttpContext context, ExchangeContext exchange, in ExchangeResult result)
    {
        var classification = exchange.Classification!;
        var request = context.Request;
        var response = context.Response;
        var end = _time.GetTimestamp();
        var trailers = context.Features.Get<IHttpResponseTrailersFeature>()?.Trailers;
        Dispose(); // the taps are done: their readers' pooled buffers go back

        var outcome = result.Outcome switch
        {
            ExchangeOutcome.ClientAbort => Outcomes.ClientAbort,
            ExchangeOutcome.Timeout => Outcomes.Timeout,
            ExchangeOutcome.BackendError or ExchangeOutcome.ClientError or ExchangeOutcome.GatewayError => Outcomes.Error,
            // Stranger review of issue 16: a refused WebSocket looked "completed". A limit's or admission's refusal (429,
            // 503) is "refused"; the gateway's answer to a client's mistake (400) stays "completed" with its status.
            ExchangeOutcome.Answered when exchange.Answer is { HttpStatus: StatusCodes.Status429TooManyRequests or StatusCodes.Status503ServiceUnavailable } => Outcomes.Refused,
            _ => Outcomes.Completed,
        };

        return new CapturedExchange
        {
            Targets = _targets,
            SessionId = classification.SessionId!,
            ClientKey = classification.ClientKey,
            Protocol = _upgraded || classification.IsWebSocket ? Protocols.WebSocket : classification.IsGrpc ? Protocols.Grpc : Protocols.Http,
            Listener = exchange.Listener.Tag(),
            Route = classification.RouteId,
            Cluster = classification.ClusterId,
            Destination = context.Features.Get<Yarp.ReverseProxy.Model.IReverseProxyFeature>()?.ProxiedDestination?.DestinationId,
            PrefixMatchChars = exchange.PrefixMatchChars,
            Tenant = classification.Tenant?.Name,
            Method = request.Method,
            Scheme = request.Scheme,
            Path = request.PathBase.Add(request.Path).Value ?? "/",
            Query = request.QueryString.HasValue ? request.QueryString.Value : null,
            HttpVersion = request.Protocol,
            BackendHttpVersion = _backendVersion is { } backend ? Microsoft.AspNetCore.Http.HttpProtocol.GetHttpProtocol(backend) : null,
            RequestHeaders = _requestHeaders,
            RequestContentType = request.ContentType,
            RequestBody = _requestBody.Detach(),
            Status = result.Outcome == ExchangeOutcome.ClientAbort && !response.HasStarted ? 0 : response.StatusCode,
            ResponseHeaders = Copy(response.Headers),
            ResponseContentType = response.ContentType,
            ResponseBody = _responseBody.Detach(),
            Trailers = trailers is { Count: > 0 } ? Copy(trailers) : null,
            StartTime = exchange.StartTime,
            StartTimestamp = exchange.StartTimestamp,
            FirstByteTimestamp = _firstByte,
            EndTimestamp = end,
            Units = _units.Snapshot(),
            UnitsDropped = _units.Dropped,
            Outcome = outcome,
            Tokens = _tokens,
        };
    }

    /// <summary>Returns the stream readers' pooled buffers; the taps ignore bytes afterwards. Called by <see cref="Complete"/>.</summary>
    public void Dispose()
    {
        _requestMessages?.Dispose();
        _responseEvents?.Dispose();
        _responseMessages?.Dispose();
        _fromClient?.Dispose();
        _toClient?.Dispose();
    }

    private static RecordedHeader[] Copy(IHeaderDictionary headers)
    {
        var list = new List<RecordedHeader>(headers.Count);
        foreach (var (name, values) in headers)
        {
            foreach (var value in values)
            {
                list.Add(new RecordedHeader(name, value ?? string.Empty));
            }
        }

        return [.. list];
    }
}

/// <summary>An exchange as the taps saw it, before redaction and serialization (done off the request path).</summary>
internal sealed class CapturedExchange
{
    /// <summary>The recordings it goes to, with its sequence number in its session in each.</summary>
    public required IReadOnlyList<(string Recording, long Sequence)> Targets { get; init; }

    public required string SessionId { get; init; }

    public string? ClientKey { get; init; }

    public required string Protocol { get; init; }

    public required string Listener { get; init; }

    public string? Route { get; init; }

    public string? Cluster { get; init; }

    /// <summary>The destination the request was forwarded to (YARP's proxied destination), or null.</summary>
    public string? Destination { get; init; }

    /// <summary>The prefix-match length of the <c>InferenceAware</c> choice, or null.</summary>
    public int? PrefixMatchChars { get; init; }

    /// <summary>The authenticated tenant's name, or null.</summary>
    public string? Tenant { get; init; }

    public required string Method { get; init; }

    public required string Scheme { get; init; }

    public required string Path { get; init; }

    public string? Query { get; init; }

    public required string HttpVersion { get; init; }

    /// <summary>The HTTP version of the backend's response (<c>HTTP/1.1</c>, <c>HTTP/2</c>); null when none came.</summary>
    public string? BackendHttpVersion { get; init; }

    public required RecordedHeader[] RequestHeaders { get; init; }

    public string? RequestContentType { get; init; }

    public CapturedBody RequestBody { get; init; }

    public int Status { get; init; }

    public required RecordedHeader[] ResponseHeaders { get; init; }

    public string? ResponseContentType { get; init; }

    public CapturedBody ResponseBody { get; init; }

    public RecordedHeader[]? Trailers { get; init; }

    public DateTimeOffset StartTime { get; init; }

    public long StartTimestamp { get; init; }

    public long FirstByteTimestamp { get; init; }

    public long EndTimestamp { get; init; }

    public required List<CapturedUnit> Units { get; init; }

    public int UnitsDropped { get; init; }

    public required string Outcome { get; init; }

    /// <summary>What the exchange cost in tokens, when a token limit counted it; null otherwise.</summary>
    public RecordedTokens? Tokens { get; init; }

    /// <summary>Returns pooled buffers; call once the record is built or dropped.</summary>
    public void Release()
    {
        RequestBody.Return();
        ResponseBody.Return();
    }
}

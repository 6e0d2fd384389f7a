using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using Replay.Measurement;
using Replay.Sources;

namespace Replay.Clients;

/// <summary>
/// Sends HTTP requests (HTTP/1.1 or HTTP/2, HTTPS, SSE) and gRPC calls (unary and server streaming, raw
/// length-prefixed messages over HTTP/2, so any recorded method can be replayed) through one shared
/// <see cref="SocketsHttpHandler"/>, and reads each response to the end, timing every token.
/// </summary>
/// <remarks>
/// Flow of one request: (1) build the message (cached target URI, headers, body bytes or a prompt written into a
/// rented buffer); (2) send with a pooled timeout source tied to the run's token; (3) read the body: SSE events,
/// gRPC messages, or the whole body, stamping each token's arrival; (4) classify the status and failure kind and
/// compare with the recording when asked. Expected failures come back as an <see cref="Outcome"/>, never as an
/// exception.
/// </remarks>
internal sealed class HttpSender : IDisposable
{

    /// <summary>Largest SSE event or gRPC message read (16 MiB): a length or a stream without boundaries beyond it is a broken response, not a reason to grow a buffer without bound.</summary>
    internal const int MaxMessageBytes = 16 << 20;

    private readonly HttpMessageInvoker _invoker;
    private readonly TimeProvider _time;
    private readonly ClientSettings _settings;
    private readonly CancellationPool _cancellations = new();
    private readonly ConcurrentDictionary<string, Uri> _httpUris = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Uri> _grpcUris = new(StringComparer.Ordinal);
    private readonly Version _httpVersion;

    /// <summary>Creates the sender over <paramref name="handler"/> (owned: disposed with the sender).</summary>
    public HttpSender(SocketsHttpHandler handler, ClientSettings settings, TimeProvider time)
    {
        _invoker = new HttpMessageInvoker(handler, disposeHandler: true);
        _settings = settings;
        _time = time;
        _httpVersion = settings.Http2 ? HttpVersion.Version20 : HttpVersion.Version11;
    }

    /// <summary>
    /// The one handler of a run, with load-generator defaults in the spirit of YARP's ForwarderHttpClientFactory:
    /// no proxy, redirects, decompression or cookies; many connections per server; several HTTP/2 connections when
    /// one's streams are used up; TLS validation off only with <c>--insecure</c>.
    /// </summary>
    public static SocketsHttpHandler CreateHandler(ClientSettings settings)
    {
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            MaxConnectionsPerServer = settings.MaxConnections,
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(2),
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            ConnectTimeout = settings.Timeout < TimeSpan.FromSeconds(10) ? settings.Timeout : TimeSpan.FromSeconds(10),
        };
        if (settings.Insecure)
        {
            // --insecure is an explicit opt-in for self-signed test and staging targets; the default validates.
#pragma warning disable CA5359
            handler.SslOptions.RemoteCertificateValidationCallback = static (_, _, _, _) => true;
#pragma warning restore CA5359
        }

        return handler;
    }

    /// <summary>Sends <paramref name="request"/> and reads its response to the end.</summary>
    /// <param name="request">The request (HTTP or gRPC).</param>
    /// <param name="tokens">Receives each token's arrival time; cleared first.</param>
    /// <param name="runToken">Cancelled when the run is aborted.</param>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<Outcome> SendAsync(PlannedRequest request, TokenTimes tokens, CancellationToken runToken)
    {
        tokens.Clear();
        var outcome = new Outcome { GrpcStatus = -1 };
        var grpc = request.Protocol == RequestProtocol.Grpc;
        var cts = _cancellations.Rent(_settings.Timeout);
        var registration = runToken.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), cts);
        byte[]? rentedBody = null;
        HttpResponseMessage? response = null;
        try
        {
            using var message = Build(request, grpc, out rentedBody);
            response = await _invoker.SendAsync(message, cts.Token).ConfigureAwait(false);
            outcome.HttpStatus = (int)response.StatusCode;
            var content = await response.Content.ReadAsStreamAsync(cts.Token).ConfigureAwait(false);
            if (grpc)
            {
                outcome = await ReadGrpcAsync(content, request, response, tokens, outcome, cts.Token).ConfigureAwait(false);
            }
            else if (request.Streamed && response.IsSuccessStatusCode && IsEventStream(response.Content.Headers.ContentType))
            {
                outcome.Streamed = true;
                var sse = await Readers.SseResponseReader.ReadAsync(content, tokens, request.CaptureText, _time, cts.Token).ConfigureAwait(false);
                outcome.Tokens = sse.CompletionTokens >= 0 ? (int)Math.Min(sse.CompletionTokens, int.MaxValue) : sse.TokenEvents;
                outcome.Text = sse.Text;
                outcome.UnparseableEvents = sse.Unparseable;
                outcome.FirstUnparseable = sse.FirstUnparseable;
                outcome.Failure = FailureKind.None;
                outcome.StatusKey = StatusKeys.Http(outcome.HttpStatus);
            }
            else
            {
                var firstByte = _time.GetTimestamp();
                var expected = _settings.Compare && request.Recorded?.BodySha256 is { } sha ? sha : null;
                var (usage, hashMatches, text) = await Readers.BodyResponseReader.ReadAsync(content, expected, request.CaptureText, cts.Token).ConfigureAwait(false);
                outcome.Text = text;
                outcome.FirstTokenTimestamp = firstByte;
                outcome.Tokens = Math.Max(0, usage);
                outcome.Failure = ClassifyHttp(outcome.HttpStatus, response);
                if (outcome.Failure == FailureKind.Refused)
                {
                    outcome.Limit = LimitOf(response);
                }
                outcome.StatusKey = StatusKeys.Http(outcome.HttpStatus);
                if (expected is not null)
                {
                    outcome.BodyComparison = hashMatches ? (byte)1 : (byte)2;
                }
            }

            if (outcome.Streamed && tokens.Count > 0)
            {
                outcome.FirstTokenTimestamp = tokens.Span[0];
                outcome.LastTokenTimestamp = tokens.Span[^1];
            }

            if (_settings.Compare && request.Recorded is { } recorded)
            {
                var same = grpc ? (recorded.GrpcStatus ?? 0) == outcome.GrpcStatus : recorded.Status == outcome.HttpStatus;
                outcome.StatusComparison = same ? (byte)1 : (byte)2;
            }
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested && !runToken.IsCancellationRequested)
        {
            outcome.Failure = FailureKind.Timeout;
            outcome.StatusKey = StatusKeys.Timeout;
            outcome.Error = string.Create(CultureInfo.InvariantCulture, $"no complete response within {_settings.Timeout.TotalMilliseconds} ms");
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or OperationCanceledException or InvalidOperationException or InvalidDataException)
        {
            outcome.Failure = FailureKind.Connection;
            outcome.StatusKey = StatusKeys.ConnectionError;
            outcome.Error = Describe(ex);
        }
        finally
        {
            registration.Dispose();
            _cancellations.Return(cts);
            response?.Dispose();
            if (rentedBody is not null)
            {
                ArrayPool<byte>.Shared.Return(rentedBody);
            }
        }

        outcome.EndTimestamp = _time.GetTimestamp();
        return outcome;
    }

    /// <summary>The settings requests are sent with.</summary>
    public ClientSettings Settings => _settings;

    /// <inheritdoc/>
    public void Dispose() => _invoker.Dispose();

    /// <summary>A short description of a transport failure: the innermost message.</summary>
    internal static string Describe(Exception ex)
    {
        var inner = ex;
        while (inner.InnerException is not null)
        {
            inner = inner.InnerException;
        }

        return inner == ex ? ex.Message : $"{ex.Message} ({inner.Message})";
    }

    private static bool IsEventStream(MediaTypeHeaderValue? type) =>
        type?.MediaType is { } media && media.Equals("text/event-stream", StringComparison.OrdinalIgnoreCase);

    /// <summary>HTTP status → failure kind: &lt; 400 success; 429, or 503 with <c>x-gateway-error</c>, refused by a limit; other errors status failures.</summary>
    internal static FailureKind ClassifyHttp(int status, HttpResponseMessage response) =>
        status < 400 ? FailureKind.None
        : status == 429 || (status == 503 && response.Headers.Contains("x-gateway-error")) ? FailureKind.Refused
        : FailureKind.Status;

    /// <summary>The limit a gateway named in <c>x-gateway-limit</c> (headers or trailers), or null.</summary>
    internal static string? LimitOf(HttpResponseMessage response) =>
        response.Headers.TryGetValues("x-gateway-limit", out var values) || response.TrailingHeaders.TryGetValues("x-gateway-limit", out values)
            ? values.FirstOrDefault()
            : null;

    /// <summary>gRPC status → failure kind: OK success; RESOURCE_EXHAUSTED (8) and UNAVAILABLE (14) refused; others status failures.</summary>
    internal static FailureKind ClassifyGrpc(int code) => code switch
    {
        0 => FailureKind.None,
        8 or 14 => FailureKind.Refused,
        _ => FailureKind.Status,
    };

    private HttpRequestMessage Build(PlannedRequest request, bool grpc, out byte[]? rented)
    {
        rented = null;
        var uris = grpc ? _grpcUris : _httpUris;
        if (!uris.TryGetValue(request.PathAndQuery, out var uri))
        {
            var target = (grpc ? _settings.GrpcTarget : _settings.HttpTarget) ?? throw new InvalidOperationException("No target for this protocol.");
            uri = uris.GetOrAdd(request.PathAndQuery, static (p, t) => new Uri(t, p), target);
        }

        var message = new HttpRequestMessage(Method(request.Method), uri)
        {
            Version = grpc ? HttpVersion.Version20 : _httpVersion,
            VersionPolicy = grpc || _settings.Http2 ? HttpVersionPolicy.RequestVersionExact : HttpVersionPolicy.RequestVersionOrLower,
        };

        if (request.Body is { } body)
        {
            message.Content = new ReadOnlyMemoryContent(body);
        }
        else if (request.Prompt is { } prompt)
        {
            var (buffer, length) = PromptBody.Rent(prompt);
            rented = buffer;
            message.Content = new ReadOnlyMemoryContent(buffer.AsMemory(0, length));
        }

        // Recorded headers minus --drop-header and the names --header replaces, then the --header values: applied in
        // place, without building a list per request.
        var overrides = _settings.HeaderOverrides;
        foreach (var (name, value) in request.Headers)
        {
            if ((_settings.DropHeaders.Count == 0 && overrides.Count == 0) || !HeaderFilter.IsReplacedOrDropped(name, _settings.DropHeaders, overrides))
            {
                AddHeader(message, name, value);
            }
        }

        foreach (var (name, value) in overrides)
        {
            AddHeader(message, name, value);
        }

        if (grpc)
        {
            message.Headers.TryAddWithoutValidation("te", "trailers");
            if (message.Content is not null && message.Content.Headers.ContentType is null)
            {
                message.Content.Headers.TryAddWithoutValidation("content-type", "application/grpc");
            }
        }

        return message;
    }

    private static void AddHeader(HttpRequestMessage message, string name, string value)
    {
        if (name.StartsWith("content-", StringComparison.OrdinalIgnoreCase))
        {
            message.Content?.Headers.TryAddWithoutValidation(name, value);
        }
        else
        {
            message.Headers.TryAddWithoutValidation(name, value);
        }
    }

    private static HttpMethod Method(string method) => method switch
    {
        "POST" => HttpMethod.Post,
        "GET" => HttpMethod.Get,
        "PUT" => HttpMethod.Put,
        "DELETE" => HttpMethod.Delete,
        "PATCH" => HttpMethod.Patch,
        "HEAD" => HttpMethod.Head,
        "OPTIONS" => HttpMethod.Options,
        _ => HttpMethod.Parse(method),
    };

    /// <summary>Reads gRPC messages to the end (<see cref="Readers.GrpcResponseReader"/>) and the status from the trailers (or the headers of a trailers-only response).</summary>
    private async ValueTask<Outcome> ReadGrpcAsync(Stream content, PlannedRequest request, HttpResponseMessage response, TokenTimes tokens, Outcome outcome, CancellationToken cancellationToken)
    {
        var grpc = await Readers.GrpcResponseReader.ReadAsync(content, tokens, request.Streamed, _time, cancellationToken).ConfigureAwait(false);
        var messages = grpc.Messages;
        var unaryTokens = grpc.UnaryTokens;
        var firstMessage = grpc.FirstMessageTimestamp;
        var code = GrpcStatus(response.TrailingHeaders) ?? GrpcStatus(response.Headers);
        outcome.Streamed = request.Streamed;
        if (code is { } c)
        {
            outcome.GrpcStatus = c;
            outcome.StatusKey = StatusKeys.Grpc(c);
            outcome.Failure = ClassifyGrpc(c);
            if (outcome.Failure == FailureKind.Refused)
            {
                outcome.Limit = LimitOf(response);
            }
        }
        else
        {
            outcome.StatusKey = StatusKeys.Http(outcome.HttpStatus);
            outcome.Failure = outcome.HttpStatus >= 400 ? ClassifyHttp(outcome.HttpStatus, response) : FailureKind.Status;
            outcome.Error = "response without grpc-status";
        }

        outcome.Tokens = request.Streamed ? messages : Math.Max(0, unaryTokens);
        if (!request.Streamed)
        {
            outcome.FirstTokenTimestamp = firstMessage;
        }

        return outcome;
    }

    private static int? GrpcStatus(HttpHeaders headers)
    {
        if (headers.NonValidated.TryGetValues("grpc-status", out var values))
        {
            foreach (var v in values)
            {
                if (int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var code))
                {
                    return code;
                }
            }
        }

        return null;
    }
}

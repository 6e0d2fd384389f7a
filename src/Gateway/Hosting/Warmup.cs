using System.Runtime;
using System.Text;
using System.Text.RegularExpressions;
using Gateway.Admin;
using Gateway.Listeners;
using Gateway.Routing;
using Yarp.ReverseProxy;

namespace Gateway.Hosting;

/// <summary>
/// Warms the proxy path before <c>/readyz</c> says ready (<see cref="BackendReadiness"/> waits for <see cref="Done"/>):
/// once the listeners are bound, sends <see cref="AdminOptions.WarmupRequests"/> requests through each route served on
/// the plain Http listener, over loopback, as a client would, then waits for the JIT's background (tier-1) compilation
/// to settle. The JIT compilation of Kestrel, routing, the gateway's steps, YARP's forwarder and
/// <c>SocketsHttpHandler</c>, and the first connections to each destination, then happen before traffic comes rather
/// than in its first seconds: a gateway restarted under load (a rolling deploy) admitted 0.77-0.89x of a warm one's
/// goodput without it (docs/benchmarks.md, "Cold start").
/// </summary>
/// <remarks>
/// Each request is a POST of a one-token chat body (a GET when the route does not take POST) to the route's path with
/// every parameter replaced by <c>warmup</c> (<c>/v1/{**rest}</c> → <c>/v1/warmup</c>), so a typical model server answers
/// 404 at once and no generation is started. With <c>Gateway:Models</c>, each body names a configured model, one per
/// model cluster in turn, so every model's cluster and its backend connections are warmed (<see cref="Bodies"/>).
/// Warm-up requests (they carry <see cref="MarkerHeader"/>) are not client traffic: they are counted under
/// <c>model="(warmup)"</c>, not logged per request, and left out of the dashboard's history; they are charged to
/// the loopback client's rate-limit partition like any other. Routes with host, header or query constraints
/// are skipped. Failures are logged at Debug and never stop start-up: readiness still waits for the backends.
/// </remarks>
internal sealed partial class Warmup(IProxyStateLookup proxyState, ListenerRegistry listeners, AdminOptions options,
    IHostApplicationLifetime lifetime, TimeProvider time, ILogger<Warmup> logger, ModelCatalog models) : BackgroundService
{
    private const int Concurrency = 8;
    private static readonly byte[] s_body = Encoding.UTF8.GetBytes("""{"model":"warmup","max_tokens":1,"messages":[{"role":"user","content":"warm-up"}]}""");
    private static readonly TimeSpan s_jitSettleLimit = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan s_requestTimeout = TimeSpan.FromSeconds(2);

    /// <summary>
    /// The header that marks this process's own warm-up requests, carrying <see cref="Marker"/>: with authentication on,
    /// they pass as no tenant (so the whole path is warmed, and their refusals would not count as failed attempts of
    /// the loopback address). The value is 128 random bits made at start and never leaves the process but over loopback
    /// to itself; the header is removed before forwarding like any caller credential.
    /// </summary>
    public const string MarkerHeader = "x-gateway-warmup";

    /// <summary>The <c>model</c> tag of warm-up requests in <c>gateway.requests</c>: they are not client traffic.</summary>
    public const string ModelTag = "(warmup)";

    /// <summary>This process's warm-up marker (see <see cref="MarkerHeader"/>).</summary>
    public static readonly string Marker = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));

    /// <summary>Whether <paramref name="value"/> is this process's marker (constant-time).</summary>
    public static bool IsMarker(string? value) =>
        value is { Length: 32 } && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
            System.Text.Encoding.ASCII.GetBytes(value), System.Text.Encoding.ASCII.GetBytes(Marker));

    private volatile bool _done;

    /// <summary>Whether warm-up has finished (or is off); until then <c>/readyz</c> answers 503 <c>warming_up</c>.</summary>
    public bool Done => _done || options.WarmupRequests <= 0;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            if (options.WarmupRequests <= 0)
            {
                return;
            }

            await StartedAsync(stoppingToken);
            var http = listeners.GetAddress(ListenerName.Http);
            if (http is null)
            {
                return;
            }

            var start = time.GetTimestamp();
            var sent = 0;
            using var client = new HttpMessageInvoker(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false, UseCookies = false });
            var bodies = Bodies(models);
            foreach (var route in proxyState.GetRoutes())
            {
                var config = route.Config;
                if (config.Match.Hosts is { Count: > 0 } || config.Match.Headers is { Count: > 0 } || config.Match.QueryParameters is { Count: > 0 }
                    || !RouteListeners.Of(config.Metadata).Contains(ListenerName.Http))
                {
                    continue;
                }

                var post = config.Match.Methods is not { Count: > 0 } methods || methods.Contains("POST", StringComparer.OrdinalIgnoreCase);
                var uri = new Uri(http, Parameter().Replace(config.Match.Path ?? "/", "warmup"));
                var workers = new Task[Concurrency];
                for (var w = 0; w < workers.Length; w++)
                {
                    var count = options.WarmupRequests / Concurrency + (w < options.WarmupRequests % Concurrency ? 1 : 0);
                    workers[w] = SendAsync(client, uri, post, count, bodies, w, stoppingToken);
                }

                await Task.WhenAll(workers);
                sent += options.WarmupRequests;
            }

            // Methods called often enough are being recompiled at tier 1 on a background thread; let that finish
            // (the count of compiled methods stops growing) so it does not compete with the first real requests.
            var settleStart = time.GetTimestamp();
            var compiled = JitInfo.GetCompiledMethodCount();
            while (time.GetElapsedTime(settleStart) < s_jitSettleLimit)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(100), time, stoppingToken);
                var now = JitInfo.GetCompiledMethodCount();
                if (now == compiled)
                {
                    break;
                }

                compiled = now;
            }

            var elapsedMs = time.GetElapsedTime(start).TotalMilliseconds;
            Log.Warmed(logger, sent, elapsedMs);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            _done = true;
        }
    }

    private async Task StartedAsync(CancellationToken cancellationToken)
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var registration = lifetime.ApplicationStarted.Register(static s => ((TaskCompletionSource)s!).TrySetResult(), started);
        await started.Task.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// The warm-up bodies: with <c>Gateway:Models</c>, one per model cluster (the first model configured on each), so
    /// each request is routed to a cluster that serves a model and its backend is warmed; a body naming no configured
    /// model would be answered 404 <c>model_not_found</c> by the gateway itself and warm nothing (stranger review,
    /// issue 14). Without models, one body naming <c>warmup</c>.
    /// </summary>
    internal static byte[][] Bodies(ModelCatalog models)
    {
        if (!models.IsEnabled)
        {
            return [s_body];
        }

        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var bodies = new List<byte[]>();
        foreach (var model in models.Models)
        {
            if (model.Options.Cluster is { } cluster && seen.Add(cluster))
            {
                bodies.Add(Body(model.Name));
            }
        }

        return bodies.Count > 0 ? [.. bodies] : [s_body];
    }

    private static byte[] Body(string model)
    {
        using var buffer = new MemoryStream();
        using (var json = new System.Text.Json.Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("model", model);
            json.WriteNumber("max_tokens", 1);
            json.WriteStartArray("messages");
            json.WriteStartObject();
            json.WriteString("role", "user");
            json.WriteString("content", "warm-up");
            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteEndObject();
        }

        return buffer.ToArray();
    }

    private async Task SendAsync(HttpMessageInvoker client, Uri uri, bool post, int count, byte[][] bodies, int worker, CancellationToken cancellationToken)
    {
        for (var i = 0; i < count; i++)
        {
            var body = bodies[(worker + i * Concurrency) % bodies.Length];
            using var request = new HttpRequestMessage(post ? HttpMethod.Post : HttpMethod.Get, uri);
            request.Headers.TryAddWithoutValidation(MarkerHeader, Marker); // passes authentication (AuthStep) as no tenant
            if (post)
            {
                request.Content = new ByteArrayContent(body) { Headers = { { "Content-Type", "application/json" } } };
            }

            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(s_requestTimeout);
            try
            {
                using var response = await client.SendAsync(request, timeout.Token);
                await response.Content.CopyToAsync(Stream.Null, timeout.Token);
            }
            catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
            {
                Log.RequestFailed(logger, uri, ex.Message);
                return;
            }
        }
    }

    [GeneratedRegex(@"\{[^}]*\}")]
    private static partial Regex Parameter();

    private static partial class Log
    {
        [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "Warm-up: {Requests} requests through the proxy path in {ElapsedMs:F0} ms; /readyz may now report ready.")]
        public static partial void Warmed(ILogger logger, int requests, double elapsedMs);

        [LoggerMessage(EventId = 4, Level = LogLevel.Debug, Message = "Warm-up request to {Uri} failed: {Error}")]
        public static partial void RequestFailed(ILogger logger, Uri uri, string error);
    }
}

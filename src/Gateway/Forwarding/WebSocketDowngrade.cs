using System.Net;
using Yarp.ReverseProxy.Model;
using Yarp.ReverseProxy.Transforms;
using Yarp.ReverseProxy.Transforms.Builder;

namespace Gateway.Forwarding;

/// <summary>
/// Retries a WebSocket as an HTTP/1.1 upgrade (RFC 6455) when its backend answered the HTTP/2 extended CONNECT
/// (RFC 8441) with 404.
/// </summary>
/// <remarks>
/// <para>
/// YARP 2.3 forwards a WebSocket (whichever HTTP version the client used) as an extended CONNECT when the cluster's
/// <c>HttpRequest:Version</c> is 2 and its policy allows (by default: <c>https</c> destinations, HTTP/2,
/// <c>RequestVersionOrLower</c>), and downgrades to the HTTP/1.1 upgrade by itself when the backend does not speak
/// HTTP/2 (ALPN) or does not advertise <c>SETTINGS_ENABLE_CONNECT_PROTOCOL</c>: SocketsHttpHandler reports both as an
/// exception that YARP catches (<c>HttpForwarder.SendAsync</c>, step 4). A backend that advertises extended CONNECT
/// but has no handler for it answers with a status instead (404: a route that matches GET only; dotnet/yarp#2774),
/// which YARP relays to the client as the end of the WebSocket.
/// </para>
/// <para>
/// The retry is done here, below the forwarder, in the cluster's client: a request transform marks an outgoing
/// extended CONNECT whose cluster allows HTTP/1.1 (the same rule YARP applies to its own downgrade: policy
/// <c>RequestVersionOrLower</c> or version 1.x; a cluster set to HTTP/2 with <c>RequestVersionExact</c> or
/// <c>RequestVersionOrHigher</c> never gets one), and <see cref="WebSocketDowngradeHandler"/> answers a 404 to it by
/// sending the HTTP/1.1 upgrade and returning that response to YARP, which then relays a 101 like any other upgrade
/// (for an HTTP/2 client, YARP checks <c>Sec-WebSocket-Accept</c> against the key of the request that was sent, the
/// retry's).
/// </para>
/// </remarks>
internal static class WebSocketDowngrade
{
    /// <summary>Marks an outgoing extended CONNECT that may be retried; the value is the client's own <c>Sec-WebSocket-Key</c> (HTTP/1.1 client) or empty (HTTP/2 client).</summary>
    internal static readonly HttpRequestOptionsKey<string> Retryable = new("Gateway.WebSocketDowngrade");

    /// <summary>Whether a cluster's request settings let a WebSocket use HTTP/1.1 (YARP's rule for its own downgrade).</summary>
    internal static bool AllowsHttp11(Yarp.ReverseProxy.Forwarder.ForwarderRequestConfig? config) =>
        config?.VersionPolicy is null or HttpVersionPolicy.RequestVersionOrLower || config.Version?.Major == 1;

    /// <summary>The HTTP/1.1 upgrade request that stands for the extended CONNECT <paramref name="connect"/> (same target and headers).</summary>
    internal static HttpRequestMessage Http11Upgrade(HttpRequestMessage connect, string clientKey)
    {
        var upgrade = new HttpRequestMessage(HttpMethod.Get, connect.RequestUri)
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        foreach (var (name, values) in connect.Headers.NonValidated)
        {
            if (name.StartsWith(':') || name.Equals("Sec-WebSocket-Key", StringComparison.OrdinalIgnoreCase)
                || name.Equals("Connection", StringComparison.OrdinalIgnoreCase) || name.Equals("Upgrade", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            upgrade.Headers.TryAddWithoutValidation(name, values);
        }

        upgrade.Headers.TryAddWithoutValidation("Connection", "Upgrade");
        upgrade.Headers.TryAddWithoutValidation("Upgrade", "websocket");
        // An HTTP/1.1 client's key goes on unchanged (it checks the backend's Sec-WebSocket-Accept itself); an HTTP/2
        // client has none (RFC 8441 §5), so a fresh one is made, as YARP does for its own downgrade.
        upgrade.Headers.TryAddWithoutValidation("Sec-WebSocket-Key", clientKey.Length > 0 ? clientKey : Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16)));
        if (!upgrade.Headers.Contains("Sec-WebSocket-Version"))
        {
            upgrade.Headers.TryAddWithoutValidation("Sec-WebSocket-Version", "13");
        }

        return upgrade;
    }
}

/// <summary>The request transform that marks a retryable extended CONNECT (see <see cref="WebSocketDowngrade"/>).</summary>
internal sealed class WebSocketDowngradeTransform : ITransformProvider
{
    private static readonly Func<RequestTransformContext, ValueTask> s_mark = static context =>
    {
        var request = context.ProxyRequest;
        if (request.Method == HttpMethod.Connect
            && string.Equals(request.Headers.Protocol, "websocket", StringComparison.OrdinalIgnoreCase)
            && WebSocketDowngrade.AllowsHttp11(context.HttpContext.Features.Get<IReverseProxyFeature>()?.Cluster?.Config.HttpRequest))
        {
            request.Options.Set(WebSocketDowngrade.Retryable, context.HttpContext.Request.Headers.SecWebSocketKey.ToString());
        }

        return ValueTask.CompletedTask;
    };

    /// <inheritdoc/>
    public void ValidateRoute(TransformRouteValidationContext context)
    {
    }

    /// <inheritdoc/>
    public void ValidateCluster(TransformClusterValidationContext context)
    {
    }

    /// <inheritdoc/>
    public void Apply(TransformBuilderContext context) => context.AddRequestTransform(s_mark);
}

/// <summary>
/// In each cluster's client: answers a 404 to a marked extended CONNECT by sending the HTTP/1.1 upgrade instead, once
/// (see <see cref="WebSocketDowngrade"/>).
/// </summary>
internal sealed partial class WebSocketDowngradeHandler(HttpMessageHandler inner, string clusterId, ILogger logger) : DelegatingHandler(inner)
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var response = await base.SendAsync(request, cancellationToken);
        if (response.StatusCode != HttpStatusCode.NotFound || !request.Options.TryGetValue(WebSocketDowngrade.Retryable, out var clientKey))
        {
            return response;
        }

        response.Dispose();
        Log.RetryingAsHttp11(logger, clusterId, request.RequestUri?.AbsolutePath ?? "/");
        return await base.SendAsync(WebSocketDowngrade.Http11Upgrade(request, clientKey), cancellationToken);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 2102, Level = LogLevel.Information,
            Message = "Cluster '{ClusterId}' answered the HTTP/2 WebSocket (extended CONNECT) to {Path} with 404; retrying as an HTTP/1.1 upgrade.")]
        public static partial void RetryingAsHttp11(ILogger logger, string clusterId, string path);
    }
}

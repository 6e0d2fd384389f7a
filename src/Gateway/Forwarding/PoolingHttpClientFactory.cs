using System.Net.Http;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Forwarding;

/// <summary>
/// YARP's per-cluster client factory (proxy-safe defaults: no redirects, no decompression, no cookies; the client
/// is reused while the cluster's configuration is unchanged), plus the pool settings of
/// <see cref="ClusterMetadata"/>; connections are opened by <see cref="BackendConnections"/> (counted per cluster, early
/// answers kept).
/// </summary>
internal sealed class PoolingHttpClientFactory : ForwarderHttpClientFactory
{
    private readonly BackendConnections _connections;
    private readonly ILogger _logger;

    public PoolingHttpClientFactory(ILogger<ForwarderHttpClientFactory> logger, BackendConnections connections)
        : base(logger)
    {
        _connections = connections;
        _logger = logger;
    }

    /// <inheritdoc/>
    /// <remarks>Adds the retry of a WebSocket whose extended CONNECT was answered 404 (<see cref="WebSocketDowngrade"/>).</remarks>
    protected override HttpMessageHandler WrapHandler(ForwarderHttpClientContext context, HttpMessageHandler handler) =>
        new WebSocketDowngradeHandler(base.WrapHandler(context, handler), context.ClusterId, _logger);

    /// <inheritdoc/>
    protected override void ConfigureHandler(ForwarderHttpClientContext context, SocketsHttpHandler handler)
    {
        base.ConfigureHandler(context, handler);
        handler.ConnectCallback = _connections.ConnectCallback(context.ClusterId);
        var metadata = context.NewMetadata;
        if (metadata is null)
        {
            return;
        }

        if (metadata.TryGetValue(ClusterMetadata.PooledConnectionLifetime, out var lifetime) && ClusterMetadata.TryParseDuration(lifetime, out var l))
        {
            handler.PooledConnectionLifetime = l;
        }

        if (metadata.TryGetValue(ClusterMetadata.PooledConnectionIdleTimeout, out var idle) && ClusterMetadata.TryParseDuration(idle, out var i))
        {
            handler.PooledConnectionIdleTimeout = i;
        }

        if (metadata.TryGetValue(ClusterMetadata.ConnectTimeout, out var connect) && ClusterMetadata.TryParseDuration(connect, out var c))
        {
            handler.ConnectTimeout = c;
        }
    }
}

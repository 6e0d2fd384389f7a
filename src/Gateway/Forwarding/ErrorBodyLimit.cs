using Gateway.Configuration;
using Gateway.Exchange;
using Gateway.Telemetry;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Transforms.Builder;

namespace Gateway.Forwarding;

/// <summary>
/// Caps the body of an error response (status 400 or above) relayed from a backend at
/// <c>Gateway:Limits:MaxErrorBodyBytes</c>: the client gets a complete response with the first bytes (a declared
/// <c>Content-Length</c> over the cap is lowered to it), the rest is read from the backend and discarded (so the backend
/// connection stays reusable), and each cut is counted (<c>gateway.backend.error_bodies.truncated</c>) and logged, at
/// most one line per cluster every 10 s.
/// </summary>
/// <remarks>
/// It runs in every route's <see cref="HttpTransformer"/> (<see cref="ErrorBodyLimitTransformer"/>), after YARP has
/// copied the status and headers and before it reads <c>HttpResponse.Body</c> to copy the body
/// (<c>HttpForwarder</c>, steps 5-7). A successful response costs one status comparison: no transform context, no
/// wrapper, no allocation.
/// </remarks>
internal sealed partial class ErrorBodyLimit
{
    private readonly long _maxBytes;
    private readonly GatewayMetrics _metrics;
    private readonly ILogger _logger;
    private readonly LogThrottle _throttle;

    public ErrorBodyLimit(GatewayLimitsOptions limits, GatewayMetrics metrics, TimeProvider time, ILogger<ErrorBodyLimit> logger)
    {
        _maxBytes = limits.MaxErrorBodyBytes;
        _metrics = metrics;
        _logger = logger;
        _throttle = new LogThrottle(time, TimeSpan.FromSeconds(10));
    }

    /// <summary>The cap in bytes.</summary>
    public long MaxBytes => _maxBytes;

    /// <summary>
    /// Installs the cap on an error response whose body YARP is about to copy (<paramref name="copyBody"/>); returns
    /// <paramref name="copyBody"/>.
    /// </summary>
    public bool Apply(HttpContext context, bool copyBody)
    {
        var response = context.Response;
        if (!copyBody || HttpMethods.IsHead(context.Request.Method))
        {
            return copyBody;
        }

        if (response.ContentLength > _maxBytes)
        {
            response.ContentLength = _maxBytes;
        }

        response.Body = new CappedResponseStream(response.Body, _maxBytes, this, context);
        return copyBody;
    }

    /// <summary>Counts and (throttled) logs a cut body; called once per response, at the first byte over the cap.</summary>
    internal void Truncated(HttpContext context)
    {
        var cluster = context.GetExchange()?.Classification?.ClusterId ?? "(none)";
        _metrics.ErrorBodyTruncated(cluster);
        if (_throttle.ShouldLog(cluster, out var suppressed))
        {
            Log.ErrorBodyTruncated(_logger, cluster, context.Response.StatusCode, _maxBytes, suppressed);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 2103, Level = LogLevel.Warning,
            Message = "Cluster {Cluster} answered {Status} with an error body over Gateway:Limits:MaxErrorBodyBytes: the client got its first {MaxBytes} bytes, the rest was discarded ({Suppressed} more since the last line).")]
        public static partial void ErrorBodyTruncated(ILogger logger, string cluster, int status, long maxBytes, long suppressed);
    }
}

/// <summary>
/// A route's transformer with <see cref="ErrorBodyLimit"/> applied to error responses; everything else is the inner
/// transformer's.
/// </summary>
internal sealed class ErrorBodyLimitTransformer(HttpTransformer inner, ErrorBodyLimit limit) : HttpTransformer
{
    public override ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken) =>
        inner.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);

    public override ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        var copied = inner.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        if (proxyResponse is null || (int)proxyResponse.StatusCode < StatusCodes.Status400BadRequest)
        {
            return copied;
        }

        return copied.IsCompletedSuccessfully
            ? new ValueTask<bool>(limit.Apply(httpContext, copied.Result))
            : ApplyAsync(copied, httpContext);
    }

    public override ValueTask TransformResponseTrailersAsync(HttpContext httpContext, HttpResponseMessage proxyResponse, CancellationToken cancellationToken) =>
        inner.TransformResponseTrailersAsync(httpContext, proxyResponse, cancellationToken);

    private async ValueTask<bool> ApplyAsync(ValueTask<bool> copied, HttpContext httpContext) => limit.Apply(httpContext, await copied);
}

/// <summary>YARP's <see cref="ITransformBuilder"/> with every transformer it builds wrapped in <see cref="ErrorBodyLimitTransformer"/>.</summary>
internal sealed class ErrorBodyLimitTransformBuilder(ITransformBuilder inner, ErrorBodyLimit limit) : ITransformBuilder
{
    public IReadOnlyList<Exception> ValidateRoute(RouteConfig route) => inner.ValidateRoute(route);

    public IReadOnlyList<Exception> ValidateCluster(ClusterConfig cluster) => inner.ValidateCluster(cluster);

    public HttpTransformer Build(RouteConfig route, ClusterConfig? cluster) => new ErrorBodyLimitTransformer(inner.Build(route, cluster), limit);

    public HttpTransformer Create(Action<TransformBuilderContext> action) => new ErrorBodyLimitTransformer(inner.Create(action), limit);
}

/// <summary>DI entry point of <see cref="ErrorBodyLimit"/>.</summary>
internal static class ErrorBodyLimitExtensions
{
    /// <summary>
    /// Adds <see cref="ErrorBodyLimit"/> and decorates YARP's <see cref="ITransformBuilder"/> (registered by
    /// <c>AddReverseProxy</c>, which must come first) so that every route's transformer applies it.
    /// </summary>
    /// <exception cref="InvalidOperationException"><c>AddReverseProxy</c> has not registered its transform builder.</exception>
    public static IReverseProxyBuilder AddErrorBodyLimit(this IReverseProxyBuilder builder)
    {
        var services = builder.Services;
        services.TryAddSingleton<ErrorBodyLimit>();
        var descriptor = services.LastOrDefault(static d => d.ServiceType == typeof(ITransformBuilder))
            ?? throw new InvalidOperationException("AddErrorBodyLimit needs AddReverseProxy's ITransformBuilder.");
        services.Remove(descriptor);
        services.AddSingleton<ITransformBuilder>(sp => new ErrorBodyLimitTransformBuilder(Resolve(sp, descriptor), sp.GetRequiredService<ErrorBodyLimit>()));
        return builder;
    }

    private static ITransformBuilder Resolve(IServiceProvider services, ServiceDescriptor descriptor) =>
        (ITransformBuilder)(descriptor.ImplementationInstance
            ?? descriptor.ImplementationFactory?.Invoke(services)
            ?? ActivatorUtilities.CreateInstance(services, descriptor.ImplementationType!));
}

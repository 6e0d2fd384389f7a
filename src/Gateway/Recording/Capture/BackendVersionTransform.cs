using Gateway.Exchange;
using Yarp.ReverseProxy.Transforms;
using Yarp.ReverseProxy.Transforms.Builder;

namespace Gateway.Recording.Capture;

/// <summary>
/// Gives a recorded exchange the HTTP version its backend answered with (<c>backend_http_version</c>): YARP chooses
/// it per request (HTTP/2 by default, HTTP/1.1 for an upgrade, a downgrade after a failed extended CONNECT), and
/// the response transform is where its <see cref="HttpResponseMessage.Version"/> is seen. An exchange no recording
/// takes costs one feature lookup.
/// </summary>
internal sealed class BackendVersionTransform : ITransformProvider
{
    private static readonly Func<ResponseTransformContext, ValueTask> s_noteVersion = static context =>
    {
        if (context.ProxyResponse is { } response && context.HttpContext.GetExchange()?.Capture is { } capture)
        {
            capture.OnBackendResponse(response.Version);
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
    public void Apply(TransformBuilderContext context) => context.AddResponseTransform(s_noteVersion);
}

using Gateway.Exchange;
using Microsoft.AspNetCore.Routing.Matching;

namespace Gateway.Listeners;

/// <summary>
/// An endpoint selector policy that removes, before any work is done, every candidate endpoint that does not
/// belong to the listener the request arrived on. A gRPC call on the WebSocket port, or a proxied path on the
/// admin port, thus finds no endpoint and is refused (404 or gRPC UNIMPLEMENTED), never forwarded. Two routes may
/// share a path on different listeners.
/// </summary>
internal sealed class ListenerMatcherPolicy : MatcherPolicy, IEndpointSelectorPolicy
{
    /// <inheritdoc/>
    public override int Order => -1000;

    /// <inheritdoc/>
    public bool AppliesToEndpoints(IReadOnlyList<Endpoint> endpoints)
    {
        for (var i = 0; i < endpoints.Count; i++)
        {
            if (endpoints[i].Metadata.GetMetadata<ListenerMetadata>() is not null)
            {
                return true;
            }
        }

        return false;
    }

    /// <inheritdoc/>
    public Task ApplyAsync(HttpContext httpContext, CandidateSet candidates)
    {
        var listener = httpContext.GetListener();

        // Each protocol has its own listener: a WebSocket upgrade is served on the WebSocket listener only, so that a
        // route like /v1/{**rest} on the HTTP listener cannot carry WebSocket sessions past their own limits.
        var misplacedUpgrade = listener != ListenerName.WebSocket && IsWebSocketUpgrade(httpContext);
        for (var i = 0; i < candidates.Count; i++)
        {
            if (!candidates.IsValidCandidate(i))
            {
                continue;
            }

            var metadata = candidates[i].Endpoint.Metadata.GetMetadata<ListenerMetadata>();
            if (metadata is not null && (listener is null || !metadata.Allows(listener.Value) || misplacedUpgrade))
            {
                candidates.SetValidity(i, false);
            }
        }

        return Task.CompletedTask;
    }

    /// <summary>Whether the request asks for a WebSocket (HTTP/1.1 <c>Upgrade: websocket</c>, or HTTP/2 extended CONNECT).</summary>
    public static bool IsWebSocketUpgrade(HttpContext context) =>
        (context.Request.Headers.Upgrade is { Count: > 0 } u && string.Equals(u[0], "websocket", StringComparison.OrdinalIgnoreCase))
        || context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpExtendedConnectFeature>()?.IsExtendedConnect == true;
}

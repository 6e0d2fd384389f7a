using Microsoft.AspNetCore.Http.Features;

namespace Gateway.Forwarding;

/// <summary>
/// Puts a WebSocket connection filter (<see cref="Exchange.ExchangeContext.Connection"/>: message limits, idle timeout)
/// on the client's side of a session, whichever way it was opened: an HTTP/1.1 upgrade (<see cref="IHttpUpgradeFeature"/>)
/// or an HTTP/2 extended CONNECT (<see cref="IHttpExtendedConnectFeature"/>, RFC 8441). YARP reads and writes the
/// filtered stream.
/// </summary>
internal static class ConnectionFilters
{
    /// <summary>Wraps the request's upgrade or extended CONNECT feature so that the accepted stream goes through <paramref name="filter"/>.</summary>
    public static void Install(HttpContext context, Func<Stream, Stream> filter)
    {
        if (context.Features.Get<IHttpUpgradeFeature>() is { IsUpgradableRequest: true } upgrade)
        {
            context.Features.Set<IHttpUpgradeFeature>(new FilteredUpgrade(upgrade, filter));
        }
        else if (context.Features.Get<IHttpExtendedConnectFeature>() is { IsExtendedConnect: true } connect)
        {
            context.Features.Set<IHttpExtendedConnectFeature>(new FilteredConnect(connect, filter));
        }
    }

    private sealed class FilteredUpgrade(IHttpUpgradeFeature inner, Func<Stream, Stream> filter) : IHttpUpgradeFeature
    {
        public bool IsUpgradableRequest => inner.IsUpgradableRequest;

        public async Task<Stream> UpgradeAsync() => filter(await inner.UpgradeAsync());
    }

    private sealed class FilteredConnect(IHttpExtendedConnectFeature inner, Func<Stream, Stream> filter) : IHttpExtendedConnectFeature
    {
        public bool IsExtendedConnect => inner.IsExtendedConnect;

        public string? Protocol => inner.Protocol;

        public async ValueTask<Stream> AcceptAsync() => filter(await inner.AcceptAsync());
    }
}

using System.Net.Sockets;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Forwarding;

/// <summary>Whose side a failed forward was on: the client's, or the backend's (what a circuit breaker may count).</summary>
internal static class ForwarderErrors
{
    /// <summary>
    /// Whether the forward failed because of the client: it went away or sent a body that could not be read
    /// (<c>*Canceled</c>, <c>*Client</c>), the outgoing request could not be built from its request
    /// (<c>RequestCreation</c>), or it could not be sent as the client wrote it (<c>Request</c> with no transport or
    /// protocol failure behind it, e.g. a header value that is not ASCII). Such a failure says nothing about the backend.
    /// </summary>
    public static bool IsClientSide(ForwarderError error, Exception? exception) => error switch
    {
        ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled or ForwarderError.RequestBodyClient
            or ForwarderError.ResponseBodyCanceled or ForwarderError.ResponseBodyClient
            or ForwarderError.UpgradeRequestCanceled or ForwarderError.UpgradeRequestClient
            or ForwarderError.UpgradeResponseCanceled or ForwarderError.UpgradeResponseClient
            or ForwarderError.RequestCreation => true,
        ForwarderError.Request => exception is not null && !IsTransportFailure(exception),
        _ => false,
    };

    /// <summary>
    /// Whether an exception says the backend could not be reached or did not speak HTTP properly: a socket or I/O error
    /// anywhere in the chain, or an <see cref="HttpRequestException"/> with a known <see cref="HttpRequestError"/>
    /// (connection, name resolution, TLS, protocol, response ended, invalid response, ...). SocketsHttpHandler throws the
    /// request's own faults (a header it cannot encode) as <see cref="HttpRequestError.Unknown"/> with no inner exception.
    /// </summary>
    private static bool IsTransportFailure(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case SocketException or IOException or TimeoutException or OperationCanceledException:
                case HttpRequestException { HttpRequestError: not HttpRequestError.Unknown }:
                    return true;
            }
        }

        return exception is not HttpRequestException;
    }
}

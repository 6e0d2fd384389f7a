using System.Net.Sockets;
using Gateway.Forwarding;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Tests.Forwarding;

/// <summary>Which failed forwards are the client's doing, and so never count against the backend in a circuit breaker.</summary>
public sealed class ForwarderErrorsTests
{
    [Theory]
    [InlineData(ForwarderError.RequestCanceled)]
    [InlineData(ForwarderError.RequestBodyClient)]
    [InlineData(ForwarderError.RequestBodyCanceled)]
    [InlineData(ForwarderError.ResponseBodyClient)]
    [InlineData(ForwarderError.UpgradeRequestClient)]
    [InlineData(ForwarderError.RequestCreation)]
    public void Client_side_errors_are_the_clients(ForwarderError error) =>
        Assert.True(ForwarderErrors.IsClientSide(error, null));

    [Theory]
    [InlineData(ForwarderError.RequestTimedOut)]
    [InlineData(ForwarderError.ResponseHeaders)]
    [InlineData(ForwarderError.ResponseBodyDestination)]
    [InlineData(ForwarderError.RequestBodyDestination)]
    [InlineData(ForwarderError.NoAvailableDestinations)]
    public void Backend_side_errors_are_the_backends(ForwarderError error) =>
        Assert.False(ForwarderErrors.IsClientSide(error, null));

    [Fact]
    public void A_request_that_cannot_be_sent_as_written_is_the_clients_but_an_unreachable_backend_is_not()
    {
        // What SocketsHttpHandler throws for a header value that is not ASCII.
        Assert.True(ForwarderErrors.IsClientSide(ForwarderError.Request, new HttpRequestException("Request headers must contain only ASCII characters.")));

        Assert.False(ForwarderErrors.IsClientSide(ForwarderError.Request,
            new HttpRequestException(HttpRequestError.ConnectionError, "Connection refused (127.0.0.1:9)", new SocketException((int)SocketError.ConnectionRefused))));
        Assert.False(ForwarderErrors.IsClientSide(ForwarderError.Request, new HttpRequestException("An error occurred while sending the request.", new IOException("reset"))));
        Assert.False(ForwarderErrors.IsClientSide(ForwarderError.Request, null));
    }
}

using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using Gateway.Exchange;
using Grpc.Core;
using Grpc.Net.Client;
using Inference.V1;
using Microsoft.AspNetCore.Http;
using TestSupport;

namespace Gateway.Tests.Listeners;

/// <summary>
/// Issue 11 edge: request headers over <c>Gateway:Limits:MaxRequestHeadersTotalBytes</c> / <c>MaxRequestHeaderCount</c>
/// get 431 with the gateway's JSON error (gRPC RESOURCE_EXHAUSTED); on HTTP/2 on that stream only, the connection and
/// its other streams survive (the issue saw GOAWAY PROTOCOL_ERROR; .NET's HttpClient, which honours the
/// SETTINGS_MAX_HEADER_LIST_SIZE Kestrel advertised, refused to send such a request at all). Mirrors
/// dotnet/aspnetcore#17861 and dotnet/yarp#1875 (an oversized header kills the HTTP/2 connection instead of a 431).
/// </summary>
public sealed class RequestHeaderLimitTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Http11_headers_over_the_limit_get_431_with_the_json_error_and_are_counted()
    {
        await using var h = await GatewayHarness.StartAsync();
        using var http = new HttpClient { BaseAddress = h.Http, Timeout = s_timeout };

        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/generate") { Content = JsonContent.Create(new { prompt = "hi", max_tokens = 1 }) };
        request.Headers.TryAddWithoutValidation("x-big", new string('a', 40 * 1024)); // over the default 32 KiB, under Kestrel's 64 KiB
        using var response = await http.SendAsync(request);

        Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, response.StatusCode);
        Assert.Equal("request_headers_too_large", await ErrorCodeAsync(response));
        Assert.Equal(0, h.Sim.Stats.Completed);

        // The connection is still usable (keep-alive), and the next normal request passes.
        (await http.PostAsJsonAsync("/v1/generate", new { prompt = "hi", max_tokens = 1 })).EnsureSuccessStatusCode();

        using var admin = new HttpClient { BaseAddress = h.Admin };
        await Eventually.TrueAsync(async () => (await admin.GetStringAsync("/metrics")).Split('\n')
                .Any(l => l.StartsWith("gateway_requests_total{", StringComparison.Ordinal) && l.Contains("status_code=\"431\"", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(5), () => "no gateway_requests_total with status_code=\"431\"");
    }

    [Fact]
    public async Task Too_many_headers_get_431_and_a_configured_limit_applies()
    {
        var options = new GatewayHarness.Options();
        options.Gateway["Gateway:Limits:MaxRequestHeaderCount"] = "20";
        options.Gateway["Gateway:Limits:MaxRequestHeadersTotalBytes"] = "4096";
        await using var h = await GatewayHarness.StartAsync(options);
        using var http = new HttpClient { BaseAddress = h.Http, Timeout = s_timeout };

        using var many = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        for (var i = 0; i < 30; i++)
        {
            many.Headers.TryAddWithoutValidation($"x-h{i}", "v");
        }

        using var tooMany = await http.SendAsync(many);
        Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, tooMany.StatusCode);
        Assert.Contains("MaxRequestHeaderCount", await tooMany.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        using var big = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        big.Headers.TryAddWithoutValidation("x-big", new string('a', 5000));
        using var tooBig = await http.SendAsync(big);
        Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, tooBig.StatusCode);
        Assert.Equal("request_headers_too_large", await ErrorCodeAsync(tooBig));

        using var ok = await http.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task Http2_headers_over_the_limit_get_431_on_their_stream_and_the_connection_survives()
    {
        await using var h = await GatewayHarness.StartAsync();
        var connections = 0;
        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (context, cancellationToken) =>
            {
                Interlocked.Increment(ref connections);
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            },
        };
        using var http = new HttpClient(handler, disposeHandler: false) { Timeout = s_timeout };
        using var channel = GrpcChannel.ForAddress(h.Grpc, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = false });
        var grpc = new Generation.GenerationClient(channel);

        // A normal call opens the connection.
        Assert.Equal(2, (await grpc.GenerateAsync(new GenerateRequest { Prompt = "hi", MaxTokens = 2 }, deadline: DateTime.UtcNow.Add(s_timeout))).Tokens);

        // An oversized plain HTTP/2 request on the same connection: 431 with the JSON error on its stream.
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(h.Grpc, "/anything"))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        request.Headers.TryAddWithoutValidation("x-big", new string('a', 40 * 1024));
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpVersion.Version20, response.Version);
        Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, response.StatusCode);
        Assert.Equal("request_headers_too_large", await ErrorCodeAsync(response));

        // An oversized gRPC call: RESOURCE_EXHAUSTED.
        var big = new Metadata { { "x-big", new string('b', 40 * 1024) } };
        var refused = await Assert.ThrowsAsync<RpcException>(() => grpc.GenerateAsync(new GenerateRequest { Prompt = "hi", MaxTokens = 2 }, big, DateTime.UtcNow.Add(s_timeout)).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);

        // The connection survived: the next call is served on it.
        Assert.Equal(3, (await grpc.GenerateAsync(new GenerateRequest { Prompt = "hi", MaxTokens = 3 }, deadline: DateTime.UtcNow.Add(s_timeout))).Tokens);
        Assert.Equal(1, Volatile.Read(ref connections));
    }

    [Fact]
    public async Task Http11_headers_beyond_kestrels_own_limit_get_kestrels_bare_431()
    {
        // Documented in docs/configuration.md: past twice the configured limit Kestrel answers before any middleware runs,
        // 431 with an empty body, and closes the connection; the gateway cannot give its JSON body there.
        await using var h = await GatewayHarness.StartAsync();
        using var http = new HttpClient { BaseAddress = h.Http, Timeout = s_timeout };
        using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        request.Headers.TryAddWithoutValidation("x-big", new string('a', 80 * 1024));

        using var response = await http.SendAsync(request);

        Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, response.StatusCode);
        Assert.Equal(string.Empty, await response.Content.ReadAsStringAsync());
        Assert.True(response.Headers.ConnectionClose);
    }

    [Fact]
    public void Counting_headers_allocates_nothing()
    {
        var headers = new HeaderDictionary
        {
            ["content-type"] = "application/json",
            ["authorization"] = "Bearer abc",
            ["x-multi"] = new Microsoft.Extensions.Primitives.StringValues(["a", "bb"]),
        };
        Assert.Equal("content-type".Length + 16 + "authorization".Length + 10 + "x-multi".Length + 3, RequestHeaderLimit.TotalBytes(headers));

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            RequestHeaderLimit.TotalBytes(headers);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    private static async Task<string?> ErrorCodeAsync(HttpResponseMessage response)
    {
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return body.RootElement.GetProperty("error").GetProperty("code").GetString();
    }
}

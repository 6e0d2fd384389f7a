using System.Net;
using System.Net.Http.Json;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Grpc.Net.Client;
using Inference.V1;
using TestSupport;

namespace Gateway.Tests.Listeners;

/// <summary>The HTTPS listener, with a certificate made by the test: HTTP/1.1 and HTTP/2 by ALPN, PFX and PEM.</summary>
public sealed class HttpsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("gw-tls-").FullName;

    [Theory]
    [InlineData("pfx")]
    [InlineData("pem")]
    public async Task Https_listener_serves_http11_http2_and_grpc_with_the_configured_certificate(string format)
    {
        using var certificate = TestCertificates.CreateSelfSigned(_dir);
        var options = new GatewayHarness.Options();
        if (format == "pfx")
        {
            options.Gateway["Gateway:Listeners:Https:Certificate:Path"] = Path.Combine(_dir, "server.pfx");
            options.Gateway["Gateway:Listeners:Https:Certificate:Password"] = "test";
        }
        else
        {
            options.Gateway["Gateway:Listeners:Https:Certificate:Path"] = Path.Combine(_dir, "server.pem");
            options.Gateway["Gateway:Listeners:Https:Certificate:KeyPath"] = Path.Combine(_dir, "server.key");
        }

        await using var h = await GatewayHarness.StartAsync(options);
        Assert.NotNull(h.Https);
        Assert.Equal("https", h.Https!.Scheme);

        // Trust exactly the test's certificate, nothing else.
        using var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, cert, _, _) => cert is not null && cert.GetCertHashString() == certificate.GetCertHashString(),
            },
        };
        using var client = new HttpClient(handler) { BaseAddress = h.Https, Timeout = TimeSpan.FromSeconds(30) };

        foreach (var version in new[] { HttpVersion.Version11, HttpVersion.Version20 })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/generate")
            {
                Version = version,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
                Content = JsonContent.Create(new { prompt = "secure", max_tokens = 4 }),
            };
            using var response = await client.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(version, response.Version);
            using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            Assert.Equal(4, body.RootElement.GetProperty("tokens").GetInt32());
        }

        using var grpcHandler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, cert, _, _) => cert is not null && cert.GetCertHashString() == certificate.GetCertHashString(),
            },
        };
        using var channel = GrpcChannel.ForAddress(h.Https, new GrpcChannelOptions { HttpHandler = grpcHandler, DisposeHttpClient = false });
        var reply = await new Generation.GenerationClient(channel).GenerateAsync(new GenerateRequest { Prompt = "tls", MaxTokens = 3 }, deadline: DateTime.UtcNow.AddSeconds(30));
        Assert.Equal(3, reply.Tokens);
        Assert.Equal(3, h.Sim.Stats.Completed);
    }

    [Fact]
    public async Task Https_listener_stays_closed_without_a_certificate()
    {
        await using var h = await GatewayHarness.StartAsync();
        Assert.Null(h.Https);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

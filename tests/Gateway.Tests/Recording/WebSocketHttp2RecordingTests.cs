using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.WebSockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using Contracts.Recording;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using TestSupport;

namespace Gateway.Tests.Recording;

/// <summary>
/// Issue 11, "a WebSocket over HTTP/2": a client's extended CONNECT (RFC 8441) on the WebSocket listener (TLS, so HTTP/2
/// by ALPN) is forwarded to a real Kestrel echo backend over TLS and recorded as a WebSocket session with its frames
/// and the HTTP version of each side; a backend that advertises extended CONNECT but answers it 404 gets the HTTP/1.1
/// upgrade as a retry.
/// </summary>
public sealed class WebSocketHttp2RecordingTests : IDisposable
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);
    private readonly string _dir = Directory.CreateTempSubdirectory("gw-h2ws-").FullName;

    // Issue 11: a WebSocket over HTTP/2 is recorded as a WebSocket session with its frames, like one over HTTP/1.1,
    // and the record says which HTTP version each side used. Before, only IHttpUpgradeFeature was tapped, so an
    // extended CONNECT (IHttpExtendedConnectFeature.AcceptAsync) was recorded with no frames.
    [Fact]
    public async Task WebSocket_over_http2_is_recorded_with_its_frames_and_both_http_versions()
    {
        using var certificate = TestCertificates.CreateSelfSigned(_dir);
        var seen = new ConcurrentQueue<(string Method, string Protocol)>();
        await using var backend = await StartEchoBackendAsync(certificate, seen, refuseConnect: false);
        await using var r = await RecordingHarness.StartAsync(null, Options(backend.Address, allowHttp11: true));
        var name = "h2ws-" + Guid.NewGuid().ToString("N")[..6];
        await r.StartRecordingAsync(name);

        var (sent, received) = await TalkAsync(r.H.WebSocket, certificate, HttpVersion.Version20, ["one", "two"]);

        await r.WaitAccountedAsync(1, TimeSpan.FromSeconds(15));
        await r.StopRecordingAsync(name);
        var ws = Assert.Single(await r.ReadAsync(name));
        Assert.Equal((Protocols.WebSocket, true, "websocket"), (ws.Protocol, ws.Streamed, ws.Listener));
        Assert.Equal(("HTTP/2", "HTTP/2"), (ws.Request.HttpVersion, ws.BackendHttpVersion));
        Assert.Equal("CONNECT", ws.Request.Method);
        Assert.Equal(200, ws.Response.Status); // an accepted extended CONNECT is a 200 on the client's stream
        Assert.Equal(sent, ws.Units!.Where(u => u.Dir == Directions.ToServer && u.Kind == UnitKinds.Text).Select(u => u.Text!).ToList());
        Assert.Equal(received, ws.Units!.Where(u => u.Dir == Directions.ToClient && u.Kind == UnitKinds.Text).Select(u => u.Text!).ToList());
        Assert.Contains(ws.Units!, u => u.Dir == Directions.ToServer && u.Kind == UnitKinds.Close && u.Text!.StartsWith("1000", StringComparison.Ordinal));
        Assert.StartsWith("ws-", ws.SessionId, StringComparison.Ordinal);
        Assert.Equal([("CONNECT", "HTTP/2")], seen.ToArray());
    }

    // Issue 11: a backend that advertises extended CONNECT (Kestrel does, SETTINGS_ENABLE_CONNECT_PROTOCOL) but answers
    // 404 to it gets the HTTP/1.1 upgrade as a retry. Mirrors dotnet/yarp#2774 (YARP sends CONNECT to an https backend
    // whose WebSocket route takes GET only, and relays its 404). YARP 2.3 downgrades by itself only when the backend
    // has no HTTP/2 or does not advertise extended CONNECT, never after a status.
    [Theory]
    [InlineData("2.0")]
    [InlineData("1.1")]
    public async Task WebSocket_extended_connect_answered_404_is_retried_as_http11_upgrade(string clientVersion)
    {
        using var certificate = TestCertificates.CreateSelfSigned(_dir);
        var seen = new ConcurrentQueue<(string Method, string Protocol)>();
        await using var backend = await StartEchoBackendAsync(certificate, seen, refuseConnect: true);
        await using var r = await RecordingHarness.StartAsync(null, Options(backend.Address, allowHttp11: true));
        var name = "h2ws-retry-" + Guid.NewGuid().ToString("N")[..6];
        await r.StartRecordingAsync(name);

        var (sent, received) = await TalkAsync(r.H.WebSocket, certificate, Version.Parse(clientVersion), ["retried"]);

        Assert.Equal(["echo:retried"], received);
        Assert.Equal([("CONNECT", "HTTP/2"), ("GET", "HTTP/1.1")], seen.ToArray());
        await r.WaitAccountedAsync(1, TimeSpan.FromSeconds(15));
        await r.StopRecordingAsync(name);
        var ws = Assert.Single(await r.ReadAsync(name));
        Assert.Equal(Protocols.WebSocket, ws.Protocol);
        Assert.Equal((clientVersion == "2.0" ? "HTTP/2" : "HTTP/1.1", "HTTP/1.1"), (ws.Request.HttpVersion, ws.BackendHttpVersion));
        Assert.Equal(sent, ws.Units!.Where(u => u.Dir == Directions.ToServer && u.Kind == UnitKinds.Text).Select(u => u.Text!).ToList());
        Assert.Equal(received, ws.Units!.Where(u => u.Dir == Directions.ToClient && u.Kind == UnitKinds.Text).Select(u => u.Text!).ToList());
        Assert.Contains(r.H.Logs.Entries, l => l.Message.Contains("retrying as an HTTP/1.1 upgrade", StringComparison.Ordinal));
    }

    // Issue 11: a cluster that forbids HTTP/1.1 (Version 2, RequestVersionExact) is not downgraded: the 404 reaches the
    // client, as YARP's own downgrade honours the same policy (dotnet/yarp#2729).
    [Fact]
    public async Task WebSocket_extended_connect_answered_404_is_not_retried_when_the_cluster_forbids_http11()
    {
        using var certificate = TestCertificates.CreateSelfSigned(_dir);
        var seen = new ConcurrentQueue<(string Method, string Protocol)>();
        await using var backend = await StartEchoBackendAsync(certificate, seen, refuseConnect: true);
        await using var h = await GatewayHarness.StartAsync(Options(backend.Address, allowHttp11: false));

        var failure = await Assert.ThrowsAsync<WebSocketException>(() => TalkAsync(h.WebSocket, certificate, HttpVersion.Version20, ["never"]));
        Assert.Contains("404", failure.Message, StringComparison.Ordinal);
        Assert.Equal([("CONNECT", "HTTP/2")], seen.ToArray());
    }

    // Issue 11: the WebSocket connection filters (a policy's MessagesPerConnection, Gateway:Limits:WebSocketIdleTimeout)
    // apply to a WebSocket over HTTP/2 as to one over HTTP/1.1 (before, they wrapped only IHttpUpgradeFeature, so an
    // extended CONNECT bypassed both; found by the HTTP/2 recording work).
    [Fact]
    public async Task Message_limit_and_idle_timeout_apply_to_a_websocket_over_http2()
    {
        using var certificate = TestCertificates.CreateSelfSigned(_dir);
        var seen = new ConcurrentQueue<(string Method, string Protocol)>();
        await using var backend = await StartEchoBackendAsync(certificate, seen, refuseConnect: false);
        using var cts = new CancellationTokenSource(s_timeout);

        // Two messages pass; the third is refused with 1008 naming the policy (the idle timeout left long, so that a slow
        // machine cannot close the session for silence first).
        var limited = Options(backend.Address, allowHttp11: true);
        var edit = limited.Edit!;
        limited.Edit = c =>
        {
            edit(c);
            c["Gateway"] = new JsonObject
            {
                ["Shaping"] = new JsonObject
                {
                    ["Policies"] = new JsonObject { ["ws"] = new JsonObject { ["Kind"] = "WebSocket", ["PermitLimit"] = 10, ["MessagesPerConnection"] = 2 } },
                },
            };
            c["ReverseProxy"]!["Routes"]!["websocket-stream"]!["Metadata"]!["Policies"] = "ws";
        };
        await using (var h = await GatewayHarness.StartAsync(limited))
        {
            using var socket = await ConnectAsync(h.WebSocket, certificate, cts.Token);
            foreach (var text in new[] { "a", "b" })
            {
                await socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, cts.Token);
                Assert.Equal("echo:" + text, await Listeners.ListenerTests.ReceiveTextAsync(socket, cts.Token));
            }

            await socket.SendAsync("c"u8.ToArray(), WebSocketMessageType.Text, true, cts.Token);
            var result = await socket.ReceiveAsync(new byte[256], cts.Token);
            Assert.Equal((WebSocketMessageType.Close, WebSocketCloseStatus.PolicyViolation), (result.MessageType, socket.CloseStatus));
        }

        // A silent session is closed by the gateway after a second, with 1001 naming the idle timeout.
        var idle = Options(backend.Address, allowHttp11: true);
        idle.Gateway["Gateway:Limits:WebSocketIdleTimeout"] = "00:00:01";
        await using (var h = await GatewayHarness.StartAsync(idle))
        {
            using var socket = await ConnectAsync(h.WebSocket, certificate, cts.Token);
            var result = await socket.ReceiveAsync(new byte[256], cts.Token);
            Assert.Equal((WebSocketMessageType.Close, WebSocketCloseStatus.EndpointUnavailable), (result.MessageType, socket.CloseStatus));
            Assert.StartsWith("idle_timeout", socket.CloseStatusDescription, StringComparison.Ordinal);
        }

        Assert.All(seen, s => Assert.Equal("HTTP/2", s.Protocol));
    }

    private static async Task<ClientWebSocket> ConnectAsync(Uri listener, X509Certificate2 certificate, CancellationToken cancellationToken)
    {
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, cert, _, _) => cert is not null && cert.GetCertHashString() == certificate.GetCertHashString(),
            },
        };
        var socket = new ClientWebSocket();
        socket.Options.HttpVersion = HttpVersion.Version20;
        socket.Options.HttpVersionPolicy = HttpVersionPolicy.RequestVersionExact;
        await socket.ConnectAsync(new Uri($"wss://{listener.Authority}/v1/stream"), new HttpMessageInvoker(handler), cancellationToken);
        return socket;
    }

    private GatewayHarness.Options Options(Uri backend, bool allowHttp11)
    {
        var options = new GatewayHarness.Options { HttpBackend = backend };
        options.Gateway["Gateway:Listeners:WebSocket:Certificate:Path"] = Path.Combine(_dir, "server.pfx");
        options.Gateway["Gateway:Listeners:WebSocket:Certificate:Password"] = "test";
        options.Edit = c =>
        {
            var cluster = c["ReverseProxy"]!["Clusters"]!["model-http"]!.AsObject();
            cluster["HttpClient"] = new JsonObject { ["DangerousAcceptAnyServerCertificate"] = true };
            if (!allowHttp11)
            {
                cluster["HttpRequest"]!["Version"] = "2";
                cluster["HttpRequest"]!["VersionPolicy"] = "RequestVersionExact";
            }
        };
        return options;
    }

    /// <summary>Opens a WebSocket to the gateway's TLS WebSocket listener with exactly <paramref name="version"/>, sends each text, reads each echo, closes.</summary>
    private static async Task<(List<string> Sent, List<string> Received)> TalkAsync(Uri listener, X509Certificate2 certificate, Version version, string[] texts)
    {
        using var cts = new CancellationTokenSource(s_timeout);
        using var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, cert, _, _) => cert is not null && cert.GetCertHashString() == certificate.GetCertHashString(),
            },
        };
        using var invoker = new HttpMessageInvoker(handler);
        using var socket = new ClientWebSocket();
        socket.Options.HttpVersion = version;
        socket.Options.HttpVersionPolicy = HttpVersionPolicy.RequestVersionExact;
        await socket.ConnectAsync(new Uri($"wss://{listener.Authority}/v1/stream"), invoker, cts.Token);
        var sent = new List<string>();
        var received = new List<string>();
        foreach (var text in texts)
        {
            sent.Add(text);
            await socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, cts.Token);
            received.Add(await Listeners.ListenerTests.ReceiveTextAsync(socket, cts.Token));
        }

        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token);
        return (sent, received);
    }

    /// <summary>
    /// A Kestrel WebSocket echo server over TLS (HTTP/1.1 and HTTP/2, extended CONNECT advertised) that notes each
    /// request's method and protocol; with <paramref name="refuseConnect"/> it answers every CONNECT with 404.
    /// </summary>
    private static Task<TestBackend> StartEchoBackendAsync(X509Certificate2 certificate, ConcurrentQueue<(string, string)> seen, bool refuseConnect) =>
        TestBackend.StartAsync(app =>
        {
            app.Use(async (context, next) =>
            {
                seen.Enqueue((context.Request.Method, context.Request.Protocol));
                if (refuseConnect && HttpMethods.IsConnect(context.Request.Method))
                {
                    context.Response.StatusCode = StatusCodes.Status404NotFound;
                    return;
                }

                await next(context);
            });
            app.UseWebSockets();
            app.Run(async context =>
            {
                if (!context.WebSockets.IsWebSocketRequest)
                {
                    context.Response.StatusCode = StatusCodes.Status400BadRequest;
                    return;
                }

                using var ws = await context.WebSockets.AcceptWebSocketAsync();
                var buffer = new byte[4096];
                while (true)
                {
                    var message = new MemoryStream();
                    WebSocketReceiveResult result;
                    do
                    {
                        result = await ws.ReceiveAsync(buffer, CancellationToken.None);
                        message.Write(buffer, 0, result.Count);
                    }
                    while (!result.EndOfMessage);

                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
                        return;
                    }

                    await ws.SendAsync(Encoding.UTF8.GetBytes("echo:" + Encoding.UTF8.GetString(message.ToArray())), WebSocketMessageType.Text, true, CancellationToken.None);
                }
            });
        }, HttpProtocols.Http1AndHttp2, certificate: certificate);

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

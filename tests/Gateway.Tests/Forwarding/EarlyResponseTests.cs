using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// Issue 11 edge: an upstream that rejects a large request early (reads part of the body, answers 400 with a JSON error
/// and closes the connection at once) gives the client that 400 and its body, never an empty 502, and is not a backend
/// failure. Mirrors dotnet/yarp#1545 / envoyproxy/envoy#16330 (early responses while the request body is still sent).
/// </summary>
public sealed class EarlyResponseTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)] // curl sends Expect: 100-continue for bodies over 1 MiB; HttpClient then reads while it sends (found by a newcomer's review)
    public async Task An_early_400_from_a_backend_that_closes_at_once_reaches_the_client_with_its_body(bool expectContinue)
    {
        // A raw backend: reads the headers and some of the body, writes its answer, and closes the socket at once with the
        // rest of the body unread (the kernel then resets the connection right after the answer).
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var stop = new CancellationTokenSource();
        var serve = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                using var socket = await listener.AcceptSocketAsync(stop.Token);
                var buffer = new byte[64 * 1024];
                var read = 0;
                while (read < buffer.Length)
                {
                    var n = await socket.ReceiveAsync(buffer.AsMemory(read), stop.Token);
                    if (n == 0)
                    {
                        break;
                    }

                    read += n;
                }

                var json = """{"error":{"message":"prompt too long","type":"invalid_request_error","code":"context_length_exceeded"}}""";
                var answer = System.Text.Encoding.ASCII.GetBytes(
                    $"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {json.Length}\r\nConnection: close\r\n\r\n{json}");
                socket.Send(answer);
                socket.Close(); // unread request bytes: the kernel answers the client's next segment with a reset
            }
        });
        try
        {
            await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { HttpBackend = new Uri($"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}") });
            using var http = new HttpClient { BaseAddress = h.Http };
            await SendLargeAndExpectAnswerAsync(http, h, expectContinue);
        }
        finally
        {
            stop.Cancel();
            listener.Stop();
            await Task.WhenAny(serve, Task.Delay(1000));
        }
    }

    private static async Task SendLargeAndExpectAnswerAsync(HttpClient http, GatewayHarness h, bool expectContinue = false)
    {
        for (var i = 0; i < 3; i++)
        {
            var body = new byte[4 * 1024 * 1024];
            Array.Fill(body, (byte)'a');
            "{\"model\":\"sim-llm\",\"prompt\":\""u8.CopyTo(body);
            "\"}"u8.CopyTo(body.AsSpan(body.Length - 2));
            var content = new ByteArrayContent(body);
            content.Headers.ContentType = new("application/json");
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = content };
            request.Headers.ExpectContinue = expectContinue;
            using var response = await http.SendAsync(request);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"attempt {i}: {(int)response.StatusCode} {text}");
            Assert.Equal("context_length_exceeded", JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("code").GetString());
        }

        Assert.DoesNotContain(h.Logs.Entries, e => e.Message.Contains("Backend failure", StringComparison.Ordinal));
    }

    [Fact]
    public async Task An_early_400_from_the_backend_reaches_the_client_with_its_body_not_an_empty_502()
    {
        await using var backend = await TestBackend.StartAsync(app => app.MapPost("/v1/chat/completions", async (HttpContext c) =>
        {
            var buffer = new byte[64 * 1024];
            _ = await c.Request.Body.ReadAsync(buffer); // part of the body only
            c.Response.StatusCode = 400;
            c.Response.Headers.Connection = "close";
            await c.Response.WriteAsJsonAsync(new { error = new { message = "prompt too long", type = "invalid_request_error", code = "context_length_exceeded" } });
            await c.Response.CompleteAsync();
            await Task.Delay(100); // the answer is on the wire; then the connection is reset with the body unread
            c.Abort();
        }));
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { HttpBackend = backend.Address });
        using var http = new HttpClient { BaseAddress = h.Http };

        await SendLargeAndExpectAnswerAsync(http, h);
    }
}

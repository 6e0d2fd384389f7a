using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;
using Grpc.Core;
using Grpc.Net.Client;
using Inference.V1;
using static Gateway.Tests.Tenants.TenantsConfig;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Stranger review of issue 13, B1-B3: the model allow-list (403 model_not_allowed) and the unknown-model 404 must hold
/// whatever the body's content type (vLLM, FastAPI, parses an unlabelled body as JSON), wherever the model is in the
/// body, and the model checked must be the model the backend sees (x-model vs the body, ?model= twice).
/// </summary>
public sealed class StrangerReviewModelTests
{
    private static HttpRequestMessage Post(string key, string body, string? contentType, string? xModel = null)
    {
        var content = new ByteArrayContent(Encoding.UTF8.GetBytes(body));
        if (contentType is not null)
        {
            content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        }

        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = content };
        request.Headers.Add("x-api-key", key);
        if (xModel is not null)
        {
            request.Headers.Add("x-model", xModel);
        }

        return request;
    }

    private const string BigChat = "{\"model\":\"big\",\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";

    [Fact]
    public async Task Stranger_review_B1_allow_list_and_unknown_model_hold_without_a_json_content_type()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Options(httpBackend: backend.Address));
        using var client = new HttpClient { BaseAddress = gw.Http };

        foreach (var type in new string?[] { null, "text/plain", "application/x-www-form-urlencoded" })
        {
            using var denied = await client.SendAsync(Post(GlobexKey, BigChat, type));
            Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
            Assert.Contains("model_not_allowed", await denied.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            using var unknown = await client.SendAsync(Post(AcmeKey, BigChat.Replace("\"big\"", "\"nope\"", StringComparison.Ordinal), type));
            Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        }

        Assert.Empty(backend.Seen);

        // A tenant held to an allow-list may not send a body the gateway cannot read a model from (a multipart form).
        using (var form = await client.SendAsync(Post(GlobexKey, "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nbig\r\n--b--\r\n", "multipart/form-data; boundary=b")))
        {
            Assert.Equal(HttpStatusCode.BadRequest, form.StatusCode);
            Assert.Contains("model_uncheckable", await form.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.Empty(backend.Seen);

        // The tenant's own model still passes without a content type, and a tenant with no allow-list may send a form.
        using (var ok = await client.SendAsync(Post(GlobexKey, BigChat.Replace("\"big\"", "\"tiny\"", StringComparison.Ordinal), null)))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        using (var form = await client.SendAsync(Post(AcmeKey, "--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc\r\n--b--\r\n", "multipart/form-data; boundary=b")))
        {
            Assert.Equal(HttpStatusCode.OK, form.StatusCode);
        }

        Assert.Equal(2, backend.Seen.Count);
    }

    [Fact]
    public async Task Stranger_review_B2_a_model_past_MaxInspectBytes_is_refused_for_a_tenant_with_an_allow_list()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Options(httpBackend: backend.Address,
            edit: c => c["Gateway"]!["Shaping"] = new JsonObject { ["MaxInspectBytes"] = 4096 }));
        using var client = new HttpClient { BaseAddress = gw.Http };
        var late = "{\"messages\":[{\"role\":\"user\",\"content\":\"" + new string('a', 8192) + "\"}],\"model\":\"big\"}";

        // Known length and chunked (unknown length) alike.
        using (var denied = await client.SendAsync(Post(GlobexKey, late, "application/json")))
        {
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, denied.StatusCode);
            Assert.Contains("Gateway:Shaping:MaxInspectBytes", await denied.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using (var chunked = Post(GlobexKey, late, "application/json"))
        {
            chunked.Content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(late)));
            chunked.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            chunked.Headers.TransferEncodingChunked = true;
            using var denied = await client.SendAsync(chunked);
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, denied.StatusCode);
        }

        Assert.Empty(backend.Seen);

        // A tenant with no allow-list is forwarded as before (nothing to check).
        using (var ok = await client.SendAsync(Post(AcmeKey, late, "application/json")))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        Assert.Single(backend.Seen);
    }

    [Fact]
    public async Task Stranger_review_B3_x_model_disagreeing_with_the_body_or_model_given_twice_is_refused_400()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Options(httpBackend: backend.Address));
        using var client = new HttpClient { BaseAddress = gw.Http };

        // Before: x-model: tiny passed globex's allow-list while the body's "big" was forwarded.
        using (var mismatch = await client.SendAsync(Post(GlobexKey, BigChat, "application/json", xModel: "tiny")))
        {
            Assert.Equal(HttpStatusCode.BadRequest, mismatch.StatusCode);
            Assert.Contains("model_mismatch", await mismatch.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.Empty(backend.Seen);
        using (var same = await client.SendAsync(Post(AcmeKey, BigChat, "application/json", xModel: "big")))
        {
            Assert.Equal(HttpStatusCode.OK, same.StatusCode);
        }

        Assert.Single(backend.Seen);

        var uri = new Uri($"ws://{gw.WebSocket.Authority}/v1/stream?model=tiny&model=big");
        using var ws = new ClientWebSocket();
        ws.Options.CollectHttpResponseDetails = true;
        ws.Options.SetRequestHeader("x-api-key", GlobexKey);
        await Assert.ThrowsAsync<WebSocketException>(() => ws.ConnectAsync(uri, CancellationToken.None));
        Assert.Equal(HttpStatusCode.BadRequest, ws.HttpStatusCode);
        Assert.Single(backend.Seen);
    }

    [Fact]
    public async Task Stranger_review_B3_grpc_x_model_metadata_disagreeing_with_GenerateRequest_model_is_invalid_argument()
    {
        await using var gw = await GatewayHarness.StartAsync(Options());
        using var channel = GrpcChannel.ForAddress(gw.Grpc);
        var client = new Generation.GenerationClient(channel);

        // Before: x-model 'tiny' passed globex's allow-list while GenerateRequest.model 'big' reached the backend.
        var mismatch = await Assert.ThrowsAsync<RpcException>(async () => await client.GenerateAsync(
            new GenerateRequest { Prompt = "hi", MaxTokens = 2, Model = "big" },
            new Metadata { { "authorization", "Bearer " + GlobexKey }, { "x-model", "tiny" } }));
        Assert.Equal(StatusCode.InvalidArgument, mismatch.StatusCode);

        var denied = await Assert.ThrowsAsync<RpcException>(async () => await client.GenerateAsync(
            new GenerateRequest { Prompt = "hi", MaxTokens = 2, Model = "big" },
            new Metadata { { "authorization", "Bearer " + GlobexKey } }));
        Assert.Equal(StatusCode.PermissionDenied, denied.StatusCode);

        var ok = await client.GenerateAsync(new GenerateRequest { Prompt = "hi", MaxTokens = 2, Model = "tiny" },
            new Metadata { { "authorization", "Bearer " + GlobexKey }, { "x-model", "tiny" } });
        Assert.True(ok.Tokens > 0);
    }
}

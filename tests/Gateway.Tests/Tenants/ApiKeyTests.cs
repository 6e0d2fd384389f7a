using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using static Gateway.Tests.Tenants.TenantsConfig;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Issue 13, API keys over HTTP and SSE: a configured key (sha256 in configuration) names its tenant; a missing or wrong
/// key is 401 invalid_api_key in OpenAI's shape, before any work and without reaching the backend; the backend sees
/// x-gateway-tenant and never the caller's key.
/// </summary>
public sealed class ApiKeyTests
{
    [Fact]
    public async Task Missing_and_wrong_keys_are_401_in_openai_shape_and_never_reach_the_backend()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Options(httpBackend: backend.Address));
        using var client = new HttpClient { BaseAddress = gw.Http };

        foreach (var (header, value) in new (string?, string?)[] { (null, null), ("Authorization", "Bearer wrong-key"), ("x-api-key", "wrong-key"), ("Authorization", "Basic dXNlcjpwdw==") })
        {
            foreach (var stream in new[] { false, true })
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat(stream: stream) };
                if (header is not null)
                {
                    request.Headers.TryAddWithoutValidation(header, value);
                }

                using var response = await client.SendAsync(request);
                Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
                Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
                using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                var error = body.RootElement.GetProperty("error");
                Assert.Equal("invalid_api_key", error.GetProperty("code").GetString());
                Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
                Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
            }
        }

        Assert.Empty(backend.Seen);
    }

    [Fact]
    public async Task A_configured_key_names_its_tenant_and_the_backend_sees_the_tenant_never_the_key()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Options(httpBackend: backend.Address));
        using var client = new HttpClient { BaseAddress = gw.Http };

        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat() })
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", AcmeKey);
            request.Headers.TryAddWithoutValidation("x-gateway-tenant", "globex"); // a client cannot pose as another tenant
            using var response = await client.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat(model: "tiny", stream: true) })
        {
            request.Headers.TryAddWithoutValidation("x-api-key", GlobexKey);
            request.Headers.TryAddWithoutValidation("api-key", GlobexKey);
            using var response = await client.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Contains("data: [DONE]", await response.Content.ReadAsStringAsync());
        }

        var seen = backend.Seen.ToArray();
        Assert.Equal(2, seen.Length);
        Assert.Equal("acme", seen[0].Headers["x-gateway-tenant"]);
        Assert.Equal("globex", seen[1].Headers["x-gateway-tenant"]);
        foreach (var r in seen)
        {
            Assert.False(r.Headers.ContainsKey("authorization"), "the caller's Authorization reached the backend");
            Assert.False(r.Headers.ContainsKey("x-api-key"));
            Assert.False(r.Headers.ContainsKey("api-key"));
            Assert.DoesNotContain(r.Headers.Values, v => v.Contains(AcmeKey, StringComparison.Ordinal) || v.Contains(GlobexKey, StringComparison.Ordinal));
        }
    }
}

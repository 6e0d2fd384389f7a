using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gateway.Tests.Tenants;

namespace Gateway.Tests.Admin;

/// <summary>
/// The dashboard's per-tenant table (issue 16), from the exchange's completion: each tenant the API keys name
/// (AuthStep) gets its requests, refusals, tokens as the token policy settled them, and its admission queue time; a
/// request with no valid key counts under <c>(none)</c>. Real gateway, real backend, real HTTP.
/// </summary>
[Collection(SerialTests.Name)]
public sealed class DashboardTenantTests
{
    [Fact]
    public async Task Stats_count_requests_tokens_refusals_and_queue_time_per_tenant()
    {
        await using var backend = await RecordingBackend.StartAsync(); // usage: 1 prompt + 1 completion token
        var options = TenantsConfig.Options(httpBackend: backend.Address, edit: c =>
        {
            c["Gateway"]!["Shaping"] = new JsonObject
            {
                ["Policies"] = new JsonObject { ["tok"] = new JsonObject { ["Kind"] = "Tokens", ["Tokens"] = 100_000, ["Window"] = "00:01:00", ["Partition"] = "Global" } },
                ["Admission"] = new JsonObject { ["model-http"] = new JsonObject { ["MaxInFlight"] = 4 } },
            };
            c["ReverseProxy"]!["Routes"]!["openai"]!["Metadata"]!["Policies"] = "tok";
        });
        await using var h = await GatewayHarness.StartAsync(options);
        using var client = new HttpClient { BaseAddress = h.Http };

        async Task<HttpStatusCode> SendAsync(string? key, string model)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = TenantsConfig.Chat(model) };
            if (key is not null)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
            }

            using var response = await client.SendAsync(request);
            return response.StatusCode;
        }

        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(HttpStatusCode.OK, await SendAsync(TenantsConfig.AcmeKey, "big"));
        }

        Assert.Equal(HttpStatusCode.OK, await SendAsync(TenantsConfig.GlobexKey, "tiny"));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(TenantsConfig.GlobexKey, "tiny"));
        Assert.Equal(HttpStatusCode.Forbidden, await SendAsync(TenantsConfig.GlobexKey, "big")); // not among its models
        Assert.Equal(HttpStatusCode.Unauthorized, await SendAsync("not-a-key", "big"));

        using var admin = new HttpClient { BaseAddress = h.Admin };
        using var doc = JsonDocument.Parse(await admin.GetStringAsync("/admin/stats"));
        var tenants = doc.RootElement.GetProperty("tenants").EnumerateArray().ToDictionary(t => t.GetProperty("tenant").GetString()!);

        var acme = tenants["acme"];
        Assert.Equal(5, acme.GetProperty("requests").GetInt64());
        Assert.Equal(5, acme.GetProperty("tokens_in").GetInt64());
        Assert.Equal(5, acme.GetProperty("tokens_out").GetInt64());
        Assert.Equal(5, acme.GetProperty("queued").GetInt64());
        Assert.True(acme.GetProperty("queue_wait_ms").GetProperty("p95").GetDouble() >= 0);
        Assert.Equal(5, acme.GetProperty("status").GetProperty("2xx").GetInt64());

        var globex = tenants["globex"];
        Assert.Equal(3, globex.GetProperty("requests").GetInt64());
        Assert.Equal(1, globex.GetProperty("status").GetProperty("4xx").GetInt64());
        Assert.Equal(2, globex.GetProperty("tokens_out").GetInt64());

        var none = tenants["(none)"];
        Assert.Equal(1, none.GetProperty("requests").GetInt64());
        Assert.Equal(0, none.GetProperty("tokens_in").GetInt64());
        Assert.Equal(JsonValueKind.Null, none.GetProperty("queue_wait_ms").ValueKind); // never reached the admission queue

        Assert.Equal(9, doc.RootElement.GetProperty("totals").GetProperty("requests").GetInt64());
    }
}

using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Gateway.Tests.Recording;
using static Gateway.Tests.Tenants.TenantsConfig;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Issue 13: a route's Metadata:Auth overrides the mode (None: no authentication; Optional: a credential is checked when
/// sent); the backend gets its own credential from the cluster's Metadata:BackendApiKey (env: or file:), never the
/// caller's (kong#4366, apisix#8122: credentials passed upstream); the tenant is recorded with each exchange and the
/// caller's key never is.
/// </summary>
public sealed class TenantRoutingTests
{
    [Fact]
    public async Task A_route_with_auth_none_or_optional_passes_without_a_credential_and_optional_still_checks_one_sent()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Options(httpBackend: backend.Address, edit: c =>
        {
            var routes = c["ReverseProxy"]!["Routes"]!.AsObject();
            routes["public"] = new JsonObject
            {
                ["ClusterId"] = "model-http",
                ["Match"] = new JsonObject { ["Path"] = "/public/{**rest}" },
                ["Metadata"] = new JsonObject { ["Listeners"] = "Http", ["Auth"] = "None", ["RouteByModel"] = "false" },
            };
            routes["optional"] = new JsonObject
            {
                ["ClusterId"] = "model-http",
                ["Match"] = new JsonObject { ["Path"] = "/optional/{**rest}" },
                ["Metadata"] = new JsonObject { ["Listeners"] = "Http", ["Auth"] = "optional", ["RouteByModel"] = "false" },
            };
        }));
        using var client = new HttpClient { BaseAddress = gw.Http };

        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/public/x", Chat())).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/optional/x", Chat())).StatusCode);
        using (var bad = new HttpRequestMessage(HttpMethod.Post, "/optional/x") { Content = Chat() })
        {
            bad.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "wrong");
            Assert.Equal(HttpStatusCode.Unauthorized, (await client.SendAsync(bad)).StatusCode);
        }

        using (var good = new HttpRequestMessage(HttpMethod.Post, "/optional/x") { Content = Chat() })
        {
            good.Headers.Authorization = new AuthenticationHeaderValue("Bearer", AcmeKey);
            Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(good)).StatusCode);
        }

        Assert.Equal(HttpStatusCode.Unauthorized, (await client.PostAsync("/v1/chat/completions", Chat())).StatusCode);
        var seen = backend.Seen.ToArray();
        Assert.Equal(3, seen.Length);
        Assert.False(seen[0].Headers.ContainsKey("x-gateway-tenant"));
        Assert.False(seen[1].Headers.ContainsKey("x-gateway-tenant"));
        Assert.Equal("acme", seen[2].Headers["x-gateway-tenant"]);
        Assert.False(seen[2].Headers.ContainsKey("authorization"));
    }

    [Fact]
    public async Task The_backend_gets_its_own_credential_from_an_environment_variable_or_a_file()
    {
        var variable = "GW_TEST_BACKEND_KEY_" + Guid.NewGuid().ToString("N");
        Environment.SetEnvironmentVariable(variable, "backend-secret-from-env");
        var file = Path.GetTempFileName();
        await File.WriteAllTextAsync(file, "backend-secret-from-file\n");
        try
        {
            foreach (var (spec, expected) in new[] { ("env:" + variable, "backend-secret-from-env"), ("file:" + file, "backend-secret-from-file") })
            {
                await using var backend = await RecordingBackend.StartAsync();
                await using var gw = await GatewayHarness.StartAsync(Options(httpBackend: backend.Address,
                    edit: c => c["ReverseProxy"]!["Clusters"]!["model-http"]!["Metadata"] = new JsonObject { ["BackendApiKey"] = spec }));
                using var client = new HttpClient { BaseAddress = gw.Http };
                using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat() };
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", AcmeKey);
                Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(request)).StatusCode);
                var seen = Assert.Single(backend.Seen);
                Assert.Equal("Bearer " + expected, seen.Headers["authorization"]);
                Assert.Equal("acme", seen.Headers["x-gateway-tenant"]);
                Assert.DoesNotContain(gw.Logs.Entries, e => e.Message.Contains(expected, StringComparison.Ordinal));
            }
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
            File.Delete(file);
        }
    }

    [Fact]
    public async Task The_tenant_is_recorded_with_each_exchange_and_the_key_never_is()
    {
        var options = Options();
        await using var rec = await RecordingHarness.StartAsync(null, options);
        await rec.StartRecordingAsync("tenants");
        using var client = new HttpClient { BaseAddress = rec.H.Http };
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat(model: "tiny") })
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", GlobexKey);
            Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(request)).StatusCode);
        }

        await rec.WaitAccountedAsync(1, TimeSpan.FromSeconds(10));
        await rec.StopRecordingAsync("tenants");
        var record = Assert.Single(await rec.ReadAsync("tenants"));
        Assert.Equal("globex", record.Tenant);
        var json = System.Text.Encoding.UTF8.GetString(Contracts.Recording.RecordingSerializer.Serialize(record));
        Assert.Contains("\"tenant\":\"globex\"", json, StringComparison.Ordinal);
        Assert.DoesNotContain(GlobexKey, json, StringComparison.Ordinal);
    }
}

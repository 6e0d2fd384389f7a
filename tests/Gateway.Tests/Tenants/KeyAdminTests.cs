using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using StackExchange.Redis;
using TestSupport;
using static Gateway.Tests.Tenants.TenantsConfig;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Issue 13, keys made through the admin API: POST answers the key once, GET lists key ids and never a secret or a
/// hash, DELETE revokes. With Redis, two gateways sharing one real redis-server: a key made on A works on B within 2 s,
/// revoked on A is refused on B within 2 s (litellm#2149: a key deleted on one instance still worked on the second;
/// litellm#9820: a blocked key kept working on the other pods). While Redis is down, the configured keys and the made
/// keys last read keep working, and making a key answers 503.
/// </summary>
[Collection(SerialTests.Name)]
public sealed class KeyAdminTests
{
    private static async Task<HttpStatusCode> CallAsync(HttpClient client, string key)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat(model: "small") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await client.SendAsync(request);
        return response.StatusCode;
    }

    private static async Task<(string Id, string Key)> MakeKeyAsync(HttpClient admin, string tenant)
    {
        using var response = await admin.PostAsync($"/admin/tenants/{tenant}/keys", null);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        return (body.GetProperty("id").GetString()!, body.GetProperty("key").GetString()!);
    }

    [Fact]
    public async Task Keys_made_listed_and_revoked_in_memory_without_redis()
    {
        await using var gw = await GatewayHarness.StartAsync(Options());
        using var client = new HttpClient { BaseAddress = gw.Http };
        using var admin = new HttpClient { BaseAddress = gw.Admin };

        using (var unknown = await admin.PostAsync("/admin/tenants/initech/keys", null))
        {
            Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
            Assert.Equal("tenant_not_found", (await unknown.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetProperty("code").GetString());
        }

        var (id, key) = await MakeKeyAsync(admin, "acme");
        Assert.StartsWith("sk-", key, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, await CallAsync(client, key));

        var list = await admin.GetStringAsync("/admin/tenants");
        Assert.Contains(id, list, StringComparison.Ordinal);
        Assert.Contains("cfg-0", list, StringComparison.Ordinal);
        Assert.DoesNotContain(key, list, StringComparison.Ordinal);
        Assert.DoesNotContain(Hashed(key)[7..], list, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(Hashed(AcmeKey)[7..], list, StringComparison.OrdinalIgnoreCase);

        Assert.Equal(HttpStatusCode.Conflict, (await admin.DeleteAsync("/admin/tenants/acme/keys/cfg-0")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await admin.DeleteAsync("/admin/tenants/acme/keys/k000000000000")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await admin.DeleteAsync($"/admin/tenants/globex/keys/{id}")).StatusCode); // another tenant's key
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/admin/tenants/acme/keys/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(client, key));
        Assert.Equal(HttpStatusCode.OK, await CallAsync(client, AcmeKey));
        Assert.DoesNotContain(gw.Logs.Entries, e => e.Message.Contains(key, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Two_gateways_sharing_redis_accept_a_new_key_and_refuse_a_revoked_one_within_2_s()
    {
        await using var redis = await RedisServer.StartAsync();
        var options = Options(edit: c => c["Gateway"]!["Shaping"] = new JsonObject { ["Redis"] = redis.ConnectionString });
        await using var a = await GatewayHarness.StartAsync(options);
        await using var b = await GatewayHarness.StartAsync(options);
        using var ca = new HttpClient { BaseAddress = a.Http };
        using var cb = new HttpClient { BaseAddress = b.Http };
        using var adminA = new HttpClient { BaseAddress = a.Admin };

        var (id, key) = await MakeKeyAsync(adminA, "globex");
        Assert.Equal(HttpStatusCode.OK, await CallAsync(ca, key)); // at once on the gateway that made it
        await Eventually.TrueAsync(async () => await CallAsync(cb, key) == HttpStatusCode.OK, TimeSpan.FromSeconds(2), () => "the key made on A is not accepted on B within 2 s");

        // Stored hashed under auth:{TENANT}:keys: the key itself is nowhere in Redis.
        await using (var mux = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString))
        {
            var entries = await mux.GetDatabase().HashGetAllAsync("auth:{globex}:keys");
            var entry = Assert.Single(entries);
            Assert.Equal(id, entry.Name.ToString());
            Assert.StartsWith(Hashed(key)[7..], entry.Value.ToString(), StringComparison.Ordinal);
            Assert.DoesNotContain(key, entry.Value.ToString(), StringComparison.Ordinal);
        }

        Assert.Contains(id, await new HttpClient { BaseAddress = b.Admin }.GetStringAsync("/admin/tenants"), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NoContent, (await adminA.DeleteAsync($"/admin/tenants/globex/keys/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(ca, key));
        await Eventually.TrueAsync(async () => await CallAsync(cb, key) == HttpStatusCode.Unauthorized, TimeSpan.FromSeconds(2), () => "the key revoked on A is still accepted on B after 2 s");
    }

    [Fact]
    public async Task While_redis_is_down_known_keys_keep_working_and_making_a_key_answers_503()
    {
        await using var redis = await RedisServer.StartAsync();
        var options = Options(edit: c => c["Gateway"]!["Shaping"] = new JsonObject { ["Redis"] = redis.ConnectionString });
        await using var gw = await GatewayHarness.StartAsync(options);
        using var client = new HttpClient { BaseAddress = gw.Http };
        using var admin = new HttpClient { BaseAddress = gw.Admin };
        var (_, made) = await MakeKeyAsync(admin, "acme");
        Assert.Equal(HttpStatusCode.OK, await CallAsync(client, made));

        await redis.StopAsync();
        await Eventually.TrueAsync(async () => (await admin.GetStringAsync("/metrics")).Split('\n')
            .Any(l => l.StartsWith("gateway_auth_key_store_errors_total{", StringComparison.Ordinal) && !l.EndsWith(" 0", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(10), () => "the key store's failures are not counted");
        Assert.Equal(HttpStatusCode.OK, await CallAsync(client, made));
        Assert.Equal(HttpStatusCode.OK, await CallAsync(client, AcmeKey));
        using (var refused = await admin.PostAsync("/admin/tenants/acme/keys", null))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.Equal("redis_unavailable", (await refused.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetProperty("code").GetString());
        }

        Assert.Contains(gw.Logs.Entries, e => e.EventId.Id == 6101);
        await redis.RestartAsync(); // an empty Redis (no persistence): the made key is gone from the store, so refused again
        await Eventually.TrueAsync(async () => await CallAsync(client, made) == HttpStatusCode.Unauthorized, TimeSpan.FromSeconds(10), () => "the store was not read again after Redis came back");
    }
}

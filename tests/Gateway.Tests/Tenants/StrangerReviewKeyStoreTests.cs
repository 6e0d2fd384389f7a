using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using TestSupport;
using static Gateway.Tests.Tenants.TenantsConfig;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Stranger review of issue 13, B5: a gateway started while Redis is down says so (warning 6101, counted in
/// gateway_auth_key_store_errors_total) without waiting for someone to make a key, and keeps polling, so a key made
/// once Redis answers is accepted.
/// </summary>
public sealed class StrangerReviewKeyStoreTests
{
    [Fact]
    public async Task Stranger_review_B5_a_gateway_started_while_redis_is_down_warns_counts_and_recovers()
    {
        await using var redis = await RedisServer.StartAsync();
        await redis.StopAsync();
        var options = Options(edit: c =>
        {
            c["Gateway"]!["Shaping"] = new JsonObject { ["Redis"] = redis.ConnectionString };
            c["Gateway"]!["Admin"] = new JsonObject { ["WarmupRequests"] = 0 }; // as the reviewer ran it: no request before the check
        });
        await using var gw = await GatewayHarness.StartAsync(options);
        using var admin = new HttpClient { BaseAddress = gw.Admin };

        // No admin call, no request: the initial load's failure alone is logged and counted.
        await Eventually.TrueAsync(() => gw.Logs.Entries.Any(e => e.EventId.Id == 6101), TimeSpan.FromSeconds(15), () => "no key-store warning while Redis is down at start-up");
        await Eventually.TrueAsync(async () => (await admin.GetStringAsync("/metrics")).Split('\n')
            .Any(l => l.StartsWith("gateway_auth_key_store_errors_total{", StringComparison.Ordinal) && !l.EndsWith(" 0", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(15), () => "the key store's initial failure is not counted");
        Assert.Single(gw.Logs.Entries, e => e.EventId.Id == 6101); // once per outage

        await redis.RestartAsync();
        string? key = null;
        await Eventually.TrueAsync(async () =>
        {
            using var response = await admin.PostAsync("/admin/tenants/acme/keys", null);
            if (response.StatusCode != HttpStatusCode.Created)
            {
                return false;
            }

            key = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("key").GetString();
            return true;
        }, TimeSpan.FromSeconds(20), () => "making a key never worked after Redis came back");

        using var client = new HttpClient { BaseAddress = gw.Http };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat(model: "small") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(request)).StatusCode);
    }
}

using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Gateway.Configuration;
using Microsoft.Extensions.DependencyInjection;
using TestSupport;
using static Gateway.Tests.Tenants.TenantsConfig;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Issue 13: tenants and their keys change on a configuration reload without a restart; a reload with a key in clear
/// is refused whole and the last good tenants stay.
/// </summary>
public sealed class TenantReloadTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("gw-tenants-reload-").FullName;

    private static string Config(params (string Tenant, string Key)[] tenants)
    {
        var map = new JsonObject();
        foreach (var (tenant, key) in tenants)
        {
            map[tenant] = new JsonObject { ["Keys"] = new JsonArray(key) };
        }

        return new JsonObject { ["Gateway"] = new JsonObject { ["Auth"] = new JsonObject { ["Mode"] = "ApiKey" }, ["Tenants"] = map } }.ToJsonString();
    }

    private static async Task<HttpStatusCode> CallAsync(HttpClient client, string key)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat() };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await client.SendAsync(request);
        return response.StatusCode;
    }

    [Fact]
    public async Task A_tenant_added_by_a_reload_is_accepted_a_removed_one_refused_and_a_key_in_clear_refuses_the_reload()
    {
        var file = Path.Combine(_dir, "tenants.json");
        await File.WriteAllTextAsync(file, Config(("acme", Hashed(AcmeKey))));
        await using var gw = await GatewayHarness.StartAsync(new GatewayHarness.Options { ConfigFile = file });
        var gate = gw.Gateway.Services.GetRequiredService<ConfigurationGate>();
        using var client = new HttpClient { BaseAddress = gw.Http };
        Assert.Equal(HttpStatusCode.OK, await CallAsync(client, AcmeKey));
        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(client, GlobexKey));

        await File.WriteAllTextAsync(file, Config(("acme", Hashed(AcmeKey)), ("globex", Hashed(GlobexKey))));
        await Eventually.TrueAsync(async () => await CallAsync(client, GlobexKey) == HttpStatusCode.OK, TimeSpan.FromSeconds(10), () => "the tenant added by the reload is not accepted");

        await File.WriteAllTextAsync(file, Config(("acme", Hashed(AcmeKey)), ("globex", "sk-in-clear-by-mistake")));
        await Eventually.TrueAsync(() => gate.Refused > 0, TimeSpan.FromSeconds(10), () => "the reload with a key in clear was not refused");
        Assert.Equal(HttpStatusCode.OK, await CallAsync(client, GlobexKey)); // the last good tenants stay
        Assert.DoesNotContain(gw.Logs.Entries, e => e.Message.Contains("sk-in-clear-by-mistake", StringComparison.Ordinal));

        await File.WriteAllTextAsync(file, Config(("acme", Hashed(AcmeKey))));
        await Eventually.TrueAsync(async () => await CallAsync(client, GlobexKey) == HttpStatusCode.Unauthorized, TimeSpan.FromSeconds(10), () => "the removed tenant is still accepted");
        Assert.Equal(HttpStatusCode.OK, await CallAsync(client, AcmeKey));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

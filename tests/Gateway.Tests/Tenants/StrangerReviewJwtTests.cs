using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using TestSupport;
using static Gateway.Tests.Tenants.TenantsConfig;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Stranger review of issue 13, D1, D2 and R10: a key removed from the signing keys file is refused without a
/// configuration reload; an identity provider's rotated key is followed on the first token naming it
/// (dotnet/aspnetcore#28948); a tenant claim of the wrong kind says what it was.
/// </summary>
public sealed class StrangerReviewJwtTests : IDisposable
{
    private const string Issuer = "https://idp.test";
    private readonly string _dir = Directory.CreateTempSubdirectory("gw-jwt-sr-").FullName;
    private readonly RSA _one = RSA.Create(2048);
    private readonly RSA _two = RSA.Create(2048);

    private static string Token(SecurityKey key, string issuer = Issuer, object? tenant = null)
    {
        var claims = new Dictionary<string, object> { ["sub"] = "user-1", ["tenant"] = tenant ?? "acme" };
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Claims = claims,
            Expires = DateTime.UtcNow.AddMinutes(5),
            SigningCredentials = new SigningCredentials(key, SecurityAlgorithms.RsaSha256),
        });
    }

    private static async Task<(HttpStatusCode Status, string Body)> CallAsync(HttpClient client, string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat("small") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await client.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    private static object Jwk(RSA rsa, string kid)
    {
        var jwk = JsonWebKeyConverter.ConvertFromRSASecurityKey(new RsaSecurityKey(rsa) { KeyId = kid });
        return new { kty = "RSA", n = jwk.N, e = jwk.E, kid, use = "sig", alg = "RS256" };
    }

    [Fact]
    public async Task Stranger_review_D1_a_key_removed_from_the_signing_keys_file_is_refused_within_seconds()
    {
        var file = Path.Combine(_dir, "jwks.json");
        await File.WriteAllTextAsync(file, JsonSerializer.Serialize(new { keys = new[] { Jwk(_one, "one"), Jwk(_two, "two") } }));
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Options("Jwt", backend.Address, c => c["Gateway"]!["Auth"]!["Jwt"] = new JsonObject
        {
            ["SigningKeysFile"] = file,
            ["Issuer"] = Issuer,
        }));
        using var client = new HttpClient { BaseAddress = gw.Http };
        var compromised = Token(new RsaSecurityKey(_two) { KeyId = "two" });
        Assert.Equal(HttpStatusCode.OK, (await CallAsync(client, compromised)).Status);

        await File.WriteAllTextAsync(file, JsonSerializer.Serialize(new { keys = new[] { Jwk(_one, "one") } }));
        await Eventually.TrueAsync(async () => (await CallAsync(client, compromised)).Status == HttpStatusCode.Unauthorized,
            TimeSpan.FromSeconds(5), () => "a token signed with the removed key is still accepted 5 s after the file changed");
        Assert.Equal(HttpStatusCode.OK, (await CallAsync(client, Token(new RsaSecurityKey(_one) { KeyId = "one" }))).Status);

        // A broken write leaves the keys in force.
        await File.WriteAllTextAsync(file, "not a key");
        await Task.Delay(500);
        Assert.Equal(HttpStatusCode.OK, (await CallAsync(client, Token(new RsaSecurityKey(_one) { KeyId = "one" }))).Status);
    }

    [Fact]
    public async Task Stranger_review_D2_aspnetcore_28948_an_unknown_kid_refreshes_the_providers_keys_at_once()
    {
        object[] keys = [Jwk(_one, "one")];
        var jwksReads = 0;
        Uri? self = null;
        await using var idp = await TestBackend.StartAsync(app =>
        {
            app.MapGet("/.well-known/openid-configuration", () => Results.Json(new { issuer = self!.ToString().TrimEnd('/'), jwks_uri = new Uri(self!, "/jwks").ToString() }));
            app.MapGet("/jwks", () =>
            {
                Interlocked.Increment(ref jwksReads);
                return Results.Json(new { keys = Volatile.Read(ref keys) });
            });
        });
        self = idp.Address;
        var issuer = idp.Address.ToString().TrimEnd('/');
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Options("Jwt", backend.Address, c =>
        {
            c["Gateway"]!["Auth"]!["Jwt"] = new JsonObject { ["Authority"] = issuer };
            c["Gateway"]!["Auth"]!["FailedAttemptsLimit"] = 1000;
        }));
        using var client = new HttpClient { BaseAddress = gw.Http };
        Assert.Equal(HttpStatusCode.OK, (await CallAsync(client, Token(new RsaSecurityKey(_one) { KeyId = "one" }, issuer))).Status);

        // The provider rotates to a new key: the first token naming it is accepted (before: 401 for about 5 minutes).
        Volatile.Write(ref keys, [Jwk(_one, "one"), Jwk(_two, "two")]);
        var (status, body) = await CallAsync(client, Token(new RsaSecurityKey(_two) { KeyId = "two" }, issuer));
        Assert.True(status == HttpStatusCode.OK, body);

        // Unknown kids do not make the gateway fetch the document on every request (rate-limited, 30 s).
        var reads = Volatile.Read(ref jwksReads);
        using var stranger = RSA.Create(2048);
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await CallAsync(client, Token(new RsaSecurityKey(stranger) { KeyId = "nope" + i }, issuer))).Status);
        }

        Assert.True(Volatile.Read(ref jwksReads) <= reads + 1, $"the JWKS was read {Volatile.Read(ref jwksReads) - reads} times for 5 unknown kids");
    }

    [Fact]
    public async Task Stranger_review_R10_a_tenant_claim_that_is_not_a_string_says_what_it_is()
    {
        var file = Path.Combine(_dir, "signing.pem");
        await File.WriteAllTextAsync(file, _one.ExportSubjectPublicKeyInfoPem());
        await using var gw = await GatewayHarness.StartAsync(Options("Jwt", null, c => c["Gateway"]!["Auth"]!["Jwt"] = new JsonObject
        {
            ["SigningKeysFile"] = file,
            ["Issuer"] = Issuer,
        }));
        using var client = new HttpClient { BaseAddress = gw.Http };
        var key = new RsaSecurityKey(_one);
        foreach (var (claim, said) in new (object, string)[] { (42, "a number"), (new[] { "acme", "globex" }, "an array"), (new Dictionary<string, object> { ["name"] = "acme" }, "a JSON object") })
        {
            var (status, body) = await CallAsync(client, Token(key, tenant: claim));
            Assert.Equal(HttpStatusCode.Unauthorized, status);
            Assert.Contains(said, body, StringComparison.Ordinal);
            Assert.DoesNotContain("has no 'tenant' claim", body, StringComparison.Ordinal);
        }
    }

    public void Dispose()
    {
        _one.Dispose();
        _two.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}

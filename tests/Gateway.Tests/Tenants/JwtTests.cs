using System.Net;
using System.Net.Http.Headers;
using System.Security.Claims;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using static Gateway.Tests.Tenants.TenantsConfig;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Issue 13, JWT bearer tokens: the test makes its own signing key (RSA, or ECDSA in a JWKS), writes it to a temporary
/// file (<c>Gateway:Auth:Jwt:SigningKeysFile</c>) or serves it by OIDC discovery (<c>Authority</c>), and signs tokens:
/// valid, expired (the message says expired: hapi-now-auth#7, vertx-auth#446), wrong audience, wrong issuer, missing
/// tenant claim, unknown tenant, bad signature, and an unsigned <c>alg: none</c> token (CVE-2015-2951).
/// </summary>
public sealed class JwtTests : IDisposable
{
    private const string Issuer = "https://idp.test";
    private const string Audience = "llm-gateway";
    private readonly string _dir = Directory.CreateTempSubdirectory("gw-jwt-").FullName;
    private readonly RSA _rsa = RSA.Create(2048);

    private static GatewayHarness.Options Jwt(string mode, string keysFile, Uri? backend) =>
        Options(mode, backend, c => c["Gateway"]!["Auth"]!["Jwt"] = new JsonObject
        {
            ["SigningKeysFile"] = keysFile,
            ["Issuer"] = Issuer,
            ["Audience"] = Audience,
            ["ClockSkew"] = "00:00:05",
        });

    private string RsaPemFile()
    {
        var path = Path.Combine(_dir, "signing.pem");
        File.WriteAllText(path, _rsa.ExportSubjectPublicKeyInfoPem());
        return path;
    }

    private static string Token(SecurityKey key, string algorithm, string? tenant = "acme", string audience = Audience, string issuer = Issuer, DateTime? expires = null)
    {
        var claims = new Dictionary<string, object> { ["sub"] = "user-1" };
        if (tenant is not null)
        {
            claims["tenant"] = tenant;
        }

        var now = DateTime.UtcNow;
        var exp = expires ?? now.AddMinutes(5);
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = audience,
            Claims = claims,
            IssuedAt = exp.AddMinutes(-10),
            NotBefore = exp.AddMinutes(-10),
            Expires = exp,
            SigningCredentials = new SigningCredentials(key, algorithm),
        });
    }

    private static async Task<(HttpStatusCode Status, string Code, string Message)> CallAsync(HttpClient client, string token, string model = "small")
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat(model) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        if (response.StatusCode == HttpStatusCode.OK)
        {
            return (response.StatusCode, "", "");
        }

        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        return (response.StatusCode, error.GetProperty("code").GetString()!, error.GetProperty("message").GetString()!);
    }

    [Fact]
    public async Task Tokens_signed_with_a_key_from_the_signing_keys_file_are_checked_every_way()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Jwt("Jwt", RsaPemFile(), backend.Address));
        using var client = new HttpClient { BaseAddress = gw.Http };
        var key = new RsaSecurityKey(_rsa);

        Assert.Equal(HttpStatusCode.OK, (await CallAsync(client, Token(key, SecurityAlgorithms.RsaSha256))).Status);
        Assert.Equal("acme", Assert.Single(backend.Seen).Headers["x-gateway-tenant"]);

        var expired = await CallAsync(client, Token(key, SecurityAlgorithms.RsaSha256, expires: DateTime.UtcNow.AddMinutes(-2)));
        Assert.Equal((HttpStatusCode.Unauthorized, "invalid_api_key"), (expired.Status, expired.Code));
        Assert.Contains("expired", expired.Message, StringComparison.OrdinalIgnoreCase);

        var audience = await CallAsync(client, Token(key, SecurityAlgorithms.RsaSha256, audience: "someone-else"));
        Assert.Equal(HttpStatusCode.Unauthorized, audience.Status);
        Assert.Contains("audience", audience.Message, StringComparison.Ordinal);

        var issuer = await CallAsync(client, Token(key, SecurityAlgorithms.RsaSha256, issuer: "https://evil.test"));
        Assert.Equal(HttpStatusCode.Unauthorized, issuer.Status);

        var noTenant = await CallAsync(client, Token(key, SecurityAlgorithms.RsaSha256, tenant: null));
        Assert.Equal(HttpStatusCode.Unauthorized, noTenant.Status);
        Assert.Contains("'tenant' claim", noTenant.Message, StringComparison.Ordinal);

        var unknown = await CallAsync(client, Token(key, SecurityAlgorithms.RsaSha256, tenant: "initech"));
        Assert.Equal(HttpStatusCode.Unauthorized, unknown.Status);
        Assert.Contains("names no tenant", unknown.Message, StringComparison.Ordinal);

        using var other = RSA.Create(2048);
        var forged = await CallAsync(client, Token(new RsaSecurityKey(other), SecurityAlgorithms.RsaSha256));
        Assert.Equal(HttpStatusCode.Unauthorized, forged.Status);
        Assert.Contains("signature", forged.Message, StringComparison.Ordinal);

        // alg: none, the signature stripped (CVE-2015-2951).
        var valid = Token(key, SecurityAlgorithms.RsaSha256);
        var parts = valid.Split('.');
        var none = Base64UrlEncoder.Encode("{\"alg\":\"none\",\"typ\":\"JWT\"}") + "." + parts[1] + ".";
        Assert.Equal(HttpStatusCode.Unauthorized, (await CallAsync(client, none)).Status);

        // An API key is not a JWT in mode Jwt.
        Assert.Equal(HttpStatusCode.Unauthorized, (await CallAsync(client, AcmeKey)).Status);
        Assert.Single(backend.Seen);

        var metrics = (await new HttpClient { BaseAddress = gw.Admin }.GetStringAsync("/metrics")).Split('\n');
        Assert.Contains(metrics, l => l.StartsWith("gateway_auth_failures_total{", StringComparison.Ordinal) && l.Contains("reason=\"expired\"", StringComparison.Ordinal) && l.EndsWith(" 1", StringComparison.Ordinal));
        Assert.Contains(metrics, l => l.StartsWith("gateway_auth_failures_total{", StringComparison.Ordinal) && l.Contains("reason=\"unknown_tenant\"", StringComparison.Ordinal) && l.EndsWith(" 1", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Jwt_over_grpc_and_websocket_expired_is_unauthenticated_and_says_so_valid_passes()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Jwt("Jwt", RsaPemFile(), backend.Address));
        var key = new RsaSecurityKey(_rsa);
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(gw.Grpc);
        var client = new Inference.V1.Generation.GenerationClient(channel);
        var request = new Inference.V1.GenerateRequest { Prompt = "hi", MaxTokens = 2 };
        var expired = await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () => await client.GenerateAsync(request,
            new Grpc.Core.Metadata { { "authorization", "Bearer " + Token(key, SecurityAlgorithms.RsaSha256, expires: DateTime.UtcNow.AddMinutes(-2)) }, { "x-model", "small" } }));
        Assert.Equal(Grpc.Core.StatusCode.Unauthenticated, expired.StatusCode);
        Assert.Contains("expired", expired.Status.Detail, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(0, gw.Sim.Stats.Requests);
        Assert.NotNull(await client.GenerateAsync(request, new Grpc.Core.Metadata { { "authorization", "Bearer " + Token(key, SecurityAlgorithms.RsaSha256) }, { "x-model", "small" } }));

        var uri = new Uri($"ws://{gw.WebSocket.Authority}/v1/stream");
        using (var refused = new System.Net.WebSockets.ClientWebSocket())
        {
            refused.Options.CollectHttpResponseDetails = true;
            refused.Options.SetRequestHeader("Authorization", "Bearer " + Token(key, SecurityAlgorithms.RsaSha256, expires: DateTime.UtcNow.AddMinutes(-2)));
            await Assert.ThrowsAsync<System.Net.WebSockets.WebSocketException>(() => refused.ConnectAsync(uri, CancellationToken.None));
            Assert.Equal(HttpStatusCode.Unauthorized, refused.HttpStatusCode);
        }

        using var ws = new System.Net.WebSockets.ClientWebSocket();
        ws.Options.SetRequestHeader("Authorization", "Bearer " + Token(key, SecurityAlgorithms.RsaSha256, tenant: "globex"));
        await ws.ConnectAsync(uri, CancellationToken.None);
        Assert.Equal("globex", Assert.Single(backend.Seen).Headers["x-gateway-tenant"]);
    }

    [Fact]
    public async Task ApiKeyOrJwt_takes_both_and_an_ecdsa_key_from_a_jwks_file()
    {
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var ecKey = new ECDsaSecurityKey(ec) { KeyId = "ec-1" };
        var jwk = JsonWebKeyConverter.ConvertFromECDsaSecurityKey(ecKey);
        var jwks = Path.Combine(_dir, "jwks.json");
        File.WriteAllText(jwks, JsonSerializer.Serialize(new { keys = new[] { new { kty = jwk.Kty, crv = jwk.Crv, x = jwk.X, y = jwk.Y, kid = jwk.Kid, use = "sig" } } }));

        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Jwt("ApiKeyOrJwt", jwks, backend.Address));
        using var client = new HttpClient { BaseAddress = gw.Http };
        var ecdsa = await CallAsync(client, Token(ecKey, SecurityAlgorithms.EcdsaSha256, tenant: "globex"));
        Assert.True(ecdsa.Status == HttpStatusCode.OK, ecdsa.Message);
        Assert.Equal(HttpStatusCode.OK, (await CallAsync(client, AcmeKey)).Status);
        Assert.Equal(HttpStatusCode.Unauthorized, (await CallAsync(client, "not-a-key")).Status);
        Assert.Equal(["globex", "acme"], backend.Seen.Select(s => s.Headers["x-gateway-tenant"]));
    }

    [Fact]
    public async Task An_authority_is_read_by_oidc_discovery()
    {
        var key = new RsaSecurityKey(_rsa) { KeyId = "rsa-1" };
        var jwk = JsonWebKeyConverter.ConvertFromRSASecurityKey(key);
        Uri? self = null;
        await using var idp = await TestBackend.StartAsync(app =>
        {
            app.MapGet("/.well-known/openid-configuration", () => Results.Json(new { issuer = self!.ToString().TrimEnd('/'), jwks_uri = new Uri(self!, "/jwks").ToString() }));
            app.MapGet("/jwks", () => Results.Json(new { keys = new[] { new { kty = "RSA", n = jwk.N, e = jwk.E, kid = jwk.Kid, use = "sig", alg = "RS256" } } }));
        });
        self = idp.Address;
        var issuer = idp.Address.ToString().TrimEnd('/');

        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Options("Jwt", backend.Address, c => c["Gateway"]!["Auth"]!["Jwt"] = new JsonObject
        {
            ["Authority"] = issuer,
            ["Audience"] = Audience,
        }));
        using var client = new HttpClient { BaseAddress = gw.Http };
        Assert.Equal(HttpStatusCode.OK, (await CallAsync(client, Token(key, SecurityAlgorithms.RsaSha256, issuer: issuer))).Status);
        Assert.Equal(HttpStatusCode.Unauthorized, (await CallAsync(client, Token(key, SecurityAlgorithms.RsaSha256, issuer: "https://other.test"))).Status);
    }

    public void Dispose()
    {
        _rsa.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}

using System.Security.Cryptography;
using Gateway.Configuration;
using Microsoft.Extensions.Configuration;
using static Gateway.Tests.Tenants.TenantsConfig;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Issue 13: every bad Gateway:Auth / Gateway:Tenants / Metadata:Auth / Metadata:BackendApiKey setting is a start-up
/// error naming its key, and a key in clear where a hash belongs, or a literal backend key, is never quoted back.
/// </summary>
public sealed class AuthConfigurationTests
{
    private const string Routes = """
        "ReverseProxy": { "Routes": { "r1": { "ClusterId": "c1", "Match": { "Path": "/v1/{**rest}" } } },
          "Clusters": { "c1": { "Destinations": { "d": { "Address": "http://127.0.0.1:9/" } } } } },
        """;

    private static IReadOnlyList<string> Errors(string json)
    {
        var configuration = new ConfigurationBuilder().AddJsonStream(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(json))).Build();
        return ConfigurationValidator.Validate(configuration, startup: false).Errors;
    }

    public static TheoryData<string, string, string> Cases() => new()
    {
        {
            "a key in clear",
            """{ "Gateway": { "Auth": { "Mode": "ApiKey" }, "Tenants": { "acme": { "Keys": [ "sk-live-supersecret" ] } } } }""",
            "Gateway:Tenants:acme:Keys:0 must be 'sha256:' and the 64 hex digits"
        },
        {
            "a short hash",
            """{ "Gateway": { "Auth": { "Mode": "ApiKey" }, "Tenants": { "acme": { "Keys": [ "sha256:abcd" ] } } } }""",
            "Gateway:Tenants:acme:Keys:0"
        },
        {
            "jwt without keys",
            """{ "Gateway": { "Auth": { "Mode": "Jwt" }, "Tenants": { "acme": { } } } }""",
            "Gateway:Auth:Jwt:Authority (the identity provider, read by OIDC discovery) or Gateway:Auth:Jwt:SigningKeysFile"
        },
        {
            "unreadable signing keys file",
            """{ "Gateway": { "Auth": { "Mode": "Jwt", "Jwt": { "SigningKeysFile": "/nonexistent/keys.pem", "Issuer": "x" } }, "Tenants": { "acme": { } } } }""",
            "Gateway:Auth:Jwt:SigningKeysFile '/nonexistent/keys.pem' cannot be read"
        },
        {
            "signing keys file without issuer",
            """{ "Gateway": { "Auth": { "Mode": "ApiKeyOrJwt", "Jwt": { "SigningKeysFile": "/nonexistent/keys.pem" } }, "Tenants": { "acme": { } } } }""",
            "Gateway:Auth:Jwt:Issuer is required"
        },
        {
            "authority not a url",
            """{ "Gateway": { "Auth": { "Mode": "Jwt", "Jwt": { "Authority": "idp" } }, "Tenants": { "acme": { } } } }""",
            "Gateway:Auth:Jwt:Authority must be an absolute http(s) URL"
        },
        {
            "auth on without tenants",
            """{ "Gateway": { "Auth": { "Mode": "ApiKey" } } }""",
            "Gateway:Auth:Mode is ApiKey but no tenant is configured"
        },
        {
            "unknown model in an allow-list",
            """{ "Gateway": { "Models": { "big": { "Cluster": "c1" } }, "Tenants": { "acme": { "Models": [ "huge" ] } } }, """ + Routes + "}",
            "Gateway:Tenants:acme:Models:0 names model 'huge', which is not a name or alias under Gateway:Models"
        },
        {
            "bad tenant name",
            """{ "Gateway": { "Tenants": { "acme corp": { } } } }""",
            "Gateway:Tenants:acme corp: a tenant name must be"
        },
        {
            "zero failed attempts",
            """{ "Gateway": { "Auth": { "FailedAttemptsLimit": 0 } } }""",
            "Gateway:Auth:FailedAttemptsLimit must be > 0 (was 0)"
        },
        {
            "route auth typo",
            """{ "ReverseProxy": { "Routes": { "r1": { "ClusterId": "c1", "Match": { "Path": "/x" }, "Metadata": { "Auth": "Requried" } } }, "Clusters": { "c1": { "Destinations": { "d": { "Address": "http://127.0.0.1:9/" } } } } } }""",
            "ReverseProxy:Routes:r1:Metadata:Auth must be Required, Optional or None (was 'Requried')"
        },
        {
            "route requires auth with mode none",
            """{ "ReverseProxy": { "Routes": { "r1": { "ClusterId": "c1", "Match": { "Path": "/x" }, "Metadata": { "Auth": "Required" } } }, "Clusters": { "c1": { "Destinations": { "d": { "Address": "http://127.0.0.1:9/" } } } } } }""",
            "ReverseProxy:Routes:r1:Metadata:Auth is Required but Gateway:Auth:Mode is None"
        },
        {
            "literal backend key",
            """{ "ReverseProxy": { "Routes": { "r1": { "ClusterId": "c1", "Match": { "Path": "/x" } } }, "Clusters": { "c1": { "Metadata": { "BackendApiKey": "sk-backend-literal" }, "Destinations": { "d": { "Address": "http://127.0.0.1:9/" } } } } } }""",
            "ReverseProxy:Clusters:c1:Metadata:BackendApiKey must be 'env:NAME'"
        },
        {
            "backend key variable not set",
            """{ "ReverseProxy": { "Routes": { "r1": { "ClusterId": "c1", "Match": { "Path": "/x" } } }, "Clusters": { "c1": { "Metadata": { "BackendApiKey": "env:GW_TEST_SURELY_UNSET_VARIABLE" }, "Destinations": { "d": { "Address": "http://127.0.0.1:9/" } } } } } }""",
            "ReverseProxy:Clusters:c1:Metadata:BackendApiKey: the environment variable 'GW_TEST_SURELY_UNSET_VARIABLE' is not set"
        },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Each_bad_setting_is_an_error_naming_its_key(string name, string json, string expected)
    {
        var errors = Errors(json);
        Assert.True(errors.Any(e => e.Contains(expected, StringComparison.Ordinal)), $"{name}: expected '{expected}' in:\n{string.Join("\n", errors)}");
        Assert.DoesNotContain(errors, e => e.Contains("supersecret", StringComparison.Ordinal) || e.Contains("sk-backend-literal", StringComparison.Ordinal));
    }

    [Fact]
    public void The_same_key_for_two_tenants_is_an_error()
    {
        var hash = Hashed(AcmeKey);
        var errors = Errors($$"""{ "Gateway": { "Tenants": { "a": { "Keys": [ "{{hash}}" ] }, "b": { "Keys": [ "{{hash.ToUpperInvariant().Replace("SHA256:", "sha256:", StringComparison.Ordinal)}}" ] } } } }""");
        Assert.Contains(errors, e => e.Contains("Gateway:Tenants:b:Keys:0 is the same key as Gateway:Tenants:a:Keys:0", StringComparison.Ordinal));
    }

    [Fact]
    public void A_signing_keys_file_with_no_key_is_an_error_and_a_pem_certificate_is_a_key()
    {
        var dir = Directory.CreateTempSubdirectory("gw-jwtcfg-").FullName;
        try
        {
            var empty = Path.Combine(dir, "empty.pem");
            File.WriteAllText(empty, "nothing here");
            Assert.Contains(Errors($$"""{ "Gateway": { "Auth": { "Mode": "Jwt", "Jwt": { "SigningKeysFile": "{{empty}}", "Issuer": "x" } }, "Tenants": { "acme": { } } } }"""),
                e => e.Contains("holds no signing key", StringComparison.Ordinal));

            using var rsa = RSA.Create(2048);
            var request = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=idp", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
            var pem = Path.Combine(dir, "cert.pem");
            File.WriteAllText(pem, cert.ExportCertificatePem());
            Assert.Empty(Errors($$"""{ "Gateway": { "Auth": { "Mode": "Jwt", "Jwt": { "SigningKeysFile": "{{pem}}", "Issuer": "x" } }, "Tenants": { "acme": { } } } }"""));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

using System.Text.Json.Nodes;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Tenants for the end-to-end shaping tests: configured under <c>Gateway:Tenants</c>, each with one API key
/// (<c>sk-test-NAME</c>, stored hashed), authenticated by the real auth step (<c>Gateway:Auth:Mode</c> ApiKey; the OpenAI
/// route's <c>Metadata:Auth</c> is Optional so a caller without a key passes as no tenant).
/// </summary>
internal static class TenantTestSupport
{
    /// <summary>The API key of <paramref name="tenant"/>.</summary>
    public static string KeyOf(string tenant) => "sk-test-" + tenant;

    /// <summary>Gateway options with <paramref name="tenants"/> configured and <paramref name="shaping"/> as <c>Gateway:Shaping</c>.</summary>
    public static GatewayHarness.Options Options(JsonObject tenants, JsonObject? shaping = null, Action<JsonObject>? edit = null) => new()
    {
        Edit = c =>
        {
            var configured = (JsonObject)tenants.DeepClone();
            foreach (var (name, node) in configured)
            {
                node!["Keys"] = new JsonArray(TenantsConfig.Hashed(KeyOf(name)));
            }

            c["Gateway"] = new JsonObject
            {
                ["Auth"] = new JsonObject { ["Mode"] = "ApiKey" },
                ["Shaping"] = shaping ?? new JsonObject(),
                ["Tenants"] = configured,
            };
            c["ReverseProxy"]!["Routes"]!["openai"]!["Metadata"]!["Auth"] = "Optional";
            edit?.Invoke(c);
        },
    };

    /// <summary>An OpenAI completion request of <paramref name="tenant"/> (its API key), or of no tenant when null.</summary>
    public static HttpRequestMessage Generate(string? tenant, int maxTokens = 4, string prompt = "hi", bool stream = false)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent(
                stream
                    ? $$$"""{"model":"sim","prompt":"{{{prompt}}}","max_tokens":{{{maxTokens}}},"stream":true,"stream_options":{"include_usage":true}}"""
                    : $$"""{"model":"sim","prompt":"{{prompt}}","max_tokens":{{maxTokens}}}""",
                System.Text.Encoding.UTF8, "application/json"),
        };
        if (tenant is not null)
        {
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", KeyOf(tenant));
        }

        return request;
    }
}

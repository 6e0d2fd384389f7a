using System.Text.Json.Nodes;
using Gateway.Tenants;
using Microsoft.Extensions.DependencyInjection;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Tenants for the end-to-end tests: configured under <c>Gateway:Tenants</c>, and named on each request by the
/// <c>x-test-tenant</c> header through the <see cref="TenantHook"/> test seam (how a caller authenticates is the auth
/// step's business; these tests are about what a tenant gets).
/// </summary>
internal static class TenantTestSupport
{
    public const string Header = "x-test-tenant";

    /// <summary>Gateway options with <paramref name="tenants"/> configured and <paramref name="shaping"/> as <c>Gateway:Shaping</c>.</summary>
    public static GatewayHarness.Options Options(JsonObject tenants, JsonObject? shaping = null, Action<JsonObject>? edit = null)
    {
        var options = new GatewayHarness.Options
        {
            Edit = c =>
            {
                c["Gateway"] = new JsonObject { ["Shaping"] = shaping ?? new JsonObject(), ["Tenants"] = tenants.DeepClone() };
                edit?.Invoke(c);
            },
        };
        options.Services = services => services.AddSingleton(Hook(tenants));
        return options;
    }

    /// <summary>A hook naming the tenant of the <c>x-test-tenant</c> header, with the options bound from <paramref name="tenants"/>.</summary>
    public static TenantHook Hook(JsonObject tenants)
    {
        var known = new Dictionary<string, TenantOptions>(StringComparer.Ordinal);
        foreach (var (name, node) in tenants)
        {
            var o = new TenantOptions();
            if (node?["Priority"] is { } p)
            {
                o.Priority = p.GetValue<string>();
            }

            if (node?["Weight"] is { } w)
            {
                o.Weight = w.GetValue<double>();
            }

            known[name] = o;
        }

        return new TenantHook(context => context.Request.Headers[Header] is { Count: > 0 } v && known.TryGetValue(v[0]!, out var o)
            ? new Tenant(v[0]!, o, Credential.ApiKey, "test-key")
            : null);
    }

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
            request.Headers.Add(Header, tenant);
        }

        return request;
    }
}

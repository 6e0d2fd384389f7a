using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using static Gateway.Tests.Tenants.TenantsConfig;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Stranger review of issue 13, R1 and R7: conflicting credentials are refused rather than one picked by precedence;
/// wrong admin tokens count against the address like wrong API keys (429 past the limit).
/// </summary>
public sealed class StrangerReviewAccessTests
{
    [Fact]
    public async Task Stranger_review_R1_conflicting_credentials_are_refused_401_and_say_so()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Options(httpBackend: backend.Address));
        using var client = new HttpClient { BaseAddress = gw.Http };
        async Task<(HttpStatusCode, string)> SendAsync(params (string Name, string Value)[] headers)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat("small") };
            foreach (var (name, value) in headers)
            {
                request.Headers.TryAddWithoutValidation(name, value);
            }

            using var response = await client.SendAsync(request);
            return (response.StatusCode, await response.Content.ReadAsStringAsync());
        }

        foreach (var headers in new[]
        {
            new[] { ("Authorization", "Bearer " + AcmeKey), ("x-api-key", GlobexKey) },
            new[] { ("x-api-key", AcmeKey), ("api-key", GlobexKey) },
            new[] { ("Authorization", "Bearer " + AcmeKey), ("Authorization", "Bearer " + GlobexKey) },
            new[] { ("x-api-key", GlobexKey), ("x-api-key", AcmeKey) },
        })
        {
            var (status, body) = await SendAsync(headers);
            Assert.Equal(HttpStatusCode.Unauthorized, status);
            Assert.Contains("conflicting credentials", body, StringComparison.Ordinal);
        }

        Assert.Empty(backend.Seen);
        // The same key twice is not a conflict.
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(("Authorization", "Bearer " + GlobexKey), ("x-api-key", GlobexKey))).Item1);
    }

    [Fact]
    public async Task Stranger_review_R7_wrong_admin_tokens_are_limited_per_address()
    {
        await using var gw = await GatewayHarness.StartAsync(Options(edit: c =>
        {
            c["Gateway"]!["Auth"]!["FailedAttemptsLimit"] = 3;
            c["Gateway"]!["Admin"] = new JsonObject { ["Token"] = "the-admin-token-0123456789" };
        }));
        using var admin = new HttpClient { BaseAddress = gw.Admin };
        async Task<HttpStatusCode> CallAsync(string token)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/admin/tenants");
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            using var response = await admin.SendAsync(request);
            if (response.StatusCode == (HttpStatusCode)429)
            {
                Assert.NotNull(response.Headers.RetryAfter);
            }

            return response.StatusCode;
        }

        Assert.Equal(HttpStatusCode.OK, await CallAsync("the-admin-token-0123456789"));
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync("guess-" + i));
        }

        Assert.Equal((HttpStatusCode)429, await CallAsync("guess-4"));
        Assert.Equal((HttpStatusCode)429, await CallAsync("the-admin-token-0123456789")); // a right guess learns nothing either
        var metrics = (await admin.GetStringAsync("/metrics")).Split('\n');
        Assert.Contains(metrics, l => l.StartsWith("gateway_auth_failures_total{", StringComparison.Ordinal) && l.Contains("reason=\"admin_token\"", StringComparison.Ordinal) && l.EndsWith(" 3", StringComparison.Ordinal));
    }
}

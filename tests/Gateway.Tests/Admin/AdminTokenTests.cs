using System.Net;
using Gateway.Configuration;
using Microsoft.Extensions.Configuration;

namespace Gateway.Tests.Admin;

/// <summary>The admin API needs a token when one is configured, and must have one off loopback.</summary>
public sealed class AdminTokenTests
{
    [Fact]
    public async Task Admin_writes_and_data_are_refused_without_the_token()
    {
        var options = new GatewayHarness.Options();
        options.Gateway["Gateway:Admin:Token"] = "s3cret";
        await using var h = await GatewayHarness.StartAsync(options);
        using var admin = new HttpClient { BaseAddress = h.Admin };

        using (var refused = await admin.PostAsync("/admin/recordings/x/start", null))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Contains("admin_token_required", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.Equal(HttpStatusCode.Unauthorized, (await admin.GetAsync("/admin/stats")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await admin.GetAsync("/admin/recordings")).StatusCode);
        using (var wrong = new HttpRequestMessage(HttpMethod.Post, "/admin/recordings/x/start"))
        {
            wrong.Headers.Add("X-Admin-Token", "guess");
            Assert.Equal(HttpStatusCode.Unauthorized, (await admin.SendAsync(wrong)).StatusCode);
        }

        // Health, readiness, metrics and the page stay open; with the token, the API answers.
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync("/healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync("/metrics")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync("/")).StatusCode);
        admin.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "s3cret");
        Assert.Equal(HttpStatusCode.OK, (await admin.PostAsync("/admin/recordings/x/start", null)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync("/admin/stats")).StatusCode);
    }

    [Theory]
    [InlineData("0.0.0.0", null, true)]
    [InlineData("::", "", true)]
    [InlineData("0.0.0.0", "s3cret", false)]
    [InlineData("127.0.0.1", null, false)]
    [InlineData("::1", null, false)]
    public void An_admin_listener_off_loopback_requires_a_token(string address, string? token, bool refused)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Gateway:Listeners:Admin:Address"] = address,
            ["Gateway:Admin:Token"] = token,
        }).Build();

        var errors = ConfigurationValidator.Validate(configuration).Errors;

        Assert.Equal(refused, errors.Any(e => e.StartsWith("Gateway:Admin:Token is required when Gateway:Listeners:Admin:Address is not loopback", StringComparison.Ordinal)));
    }
}

using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Gateway.Tenants;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using static Gateway.Tests.Tenants.TenantsConfig;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Issue 13: failed attempts per client address are limited (FailedAttemptsLimit per FailedAttemptsWindow); beyond it
/// 429 too_many_failed_attempts with Retry-After, before any credential is checked (so a guesser learns nothing, even
/// with a right guess), and counted. Keys of any length or alphabet are refused, never a 500
/// (claude-code-router#1626: near-miss tokens of any length must be rejected without throwing).
/// </summary>
public sealed class FailedAttemptsTests
{
    [Fact]
    public async Task An_address_over_its_failed_attempts_is_refused_429_even_with_a_good_key_and_it_is_counted()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Options(httpBackend: backend.Address, edit: c => c["Gateway"]!["Auth"]!["FailedAttemptsLimit"] = 3));
        using var client = new HttpClient { BaseAddress = gw.Http };

        foreach (var bad in new[] { "a", new string('x', 5000), "ключ-🔑" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat() };
            request.Headers.TryAddWithoutValidation("x-api-key", Uri.EscapeDataString(bad));
            using var response = await client.SendAsync(request);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }

        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat() })
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", AcmeKey);
            using var response = await client.SendAsync(request);
            Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
            Assert.Equal("too_many_failed_attempts", response.Headers.GetValues("x-gateway-error").Single());
            Assert.Equal("auth:failed_attempts", response.Headers.GetValues("x-gateway-limit").Single());
            Assert.InRange(response.Headers.RetryAfter!.Delta!.Value.TotalSeconds, 1, 60);
        }

        Assert.Empty(backend.Seen);
        var metrics = (await new HttpClient { BaseAddress = gw.Admin }.GetStringAsync("/metrics")).Split('\n');
        Assert.Contains(metrics, l => l.StartsWith("gateway_auth_failures_total{", StringComparison.Ordinal) && l.Contains("reason=\"invalid\"", StringComparison.Ordinal) && l.EndsWith(" 3", StringComparison.Ordinal));
        Assert.Contains(metrics, l => l.StartsWith("gateway_auth_failures_total{", StringComparison.Ordinal) && l.Contains("reason=\"rate_limited\"", StringComparison.Ordinal) && l.EndsWith(" 1", StringComparison.Ordinal));
        // Logged, throttled, never with the key.
        Assert.Contains(gw.Logs.Entries, e => e.Message.Contains("Authentication refused", StringComparison.Ordinal));
        Assert.DoesNotContain(gw.Logs.Entries, e => e.Message.Contains(AcmeKey, StringComparison.Ordinal) || e.Message.Contains("xxxxxxxx", StringComparison.Ordinal));
    }

    // Found by bench/auth.sh: the gateway's own start-up warm-up (200 requests through each route, over loopback, without
    // a credential) was refused 401 and locked the loopback address out for a minute.
    [Fact]
    public async Task The_start_up_warm_up_passes_authentication_and_does_not_lock_out_the_loopback_address()
    {
        await using var backend = await RecordingBackend.StartAsync();
        var options = Options(httpBackend: backend.Address, edit: c => c["Gateway"]!["Auth"]!["FailedAttemptsLimit"] = 3);
        options.Gateway["Gateway:Admin:WarmupRequests"] = "20";
        await using var gw = await GatewayHarness.StartAsync(options);
        var warmup = (Gateway.Hosting.Warmup)gw.Gateway.Services.GetServices<Microsoft.Extensions.Hosting.IHostedService>().Single(s => s is Gateway.Hosting.Warmup);
        await TestSupport.Eventually.TrueAsync(() => warmup.Done, TimeSpan.FromSeconds(30), () => "warm-up did not finish");
        var metrics = (await new HttpClient { BaseAddress = gw.Admin }.GetStringAsync("/metrics")).Split('\n');
        Assert.Contains(metrics, l => l.StartsWith("gateway_requests_total{", StringComparison.Ordinal) && l.Contains("route=\"openai\"", StringComparison.Ordinal)); // it ran
        Assert.DoesNotContain(metrics, l => l.StartsWith("gateway_auth_failures_total{", StringComparison.Ordinal) && !l.EndsWith(" 0", StringComparison.Ordinal));

        using var client = new HttpClient { BaseAddress = gw.Http };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat() };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", AcmeKey);
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(request)).StatusCode);
        Assert.All(backend.Seen, r => Assert.False(r.Headers.ContainsKey("x-gateway-warmup"), "the warm-up marker was forwarded"));

        // A forged marker is no credential.
        using var forged = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat() };
        forged.Headers.TryAddWithoutValidation("x-gateway-warmup", new string('0', 32));
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.SendAsync(forged)).StatusCode);
    }

    [Fact]
    public void The_window_forgets_failures_when_it_ends_and_counts_ipv6_by_its_64_prefix()
    {
        var time = new FakeTimeProvider();
        var failed = new FailedAttempts(time);
        var window = TimeSpan.FromMinutes(1);
        var a = IPAddress.Parse("2001:db8::1");
        var b = IPAddress.Parse("2001:db8::2"); // same /64
        failed.Fail(a, window);
        failed.Fail(b, window);
        Assert.True(failed.IsBlocked(IPAddress.Parse("2001:db8::3"), 2, window, out var retryAfter));
        Assert.Equal(window, retryAfter);
        Assert.False(failed.IsBlocked(IPAddress.Parse("2001:db9::1"), 2, window, out _));
        time.Advance(TimeSpan.FromSeconds(30));
        Assert.True(failed.IsBlocked(a, 2, window, out retryAfter));
        Assert.Equal(TimeSpan.FromSeconds(30), retryAfter);
        time.Advance(TimeSpan.FromSeconds(30));
        Assert.False(failed.IsBlocked(a, 2, window, out _));
        failed.Fail(IPAddress.Loopback, window); // sweeps the ended window
        Assert.Equal(1, failed.Count);
    }
}

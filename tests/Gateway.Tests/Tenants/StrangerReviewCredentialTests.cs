using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Gateway.Tests.Recording;
using TestSupport;
using static Gateway.Tests.Tenants.TenantsConfig;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Stranger review of issue 13, B4 and R8: a cluster's backend key file that is emptied, deleted or made multi-line
/// keeps the last good key (warned, counted), never sends the request without Authorization; underscore variants of
/// the gateway's own headers are stripped; credentials in the query string and x-goog-api-key are not recorded.
/// </summary>
public sealed class StrangerReviewCredentialTests
{
    [Fact]
    public async Task Stranger_review_B4_backend_key_file_emptied_deleted_or_multiline_keeps_the_last_good_key_and_warns()
    {
        var dir = Directory.CreateTempSubdirectory("gw-backend-key-");
        var file = Path.Combine(dir.FullName, "backend.key");
        await File.WriteAllTextAsync(file, "secretvalue-one\n");
        try
        {
            await using var backend = await RecordingBackend.StartAsync();
            await using var gw = await GatewayHarness.StartAsync(Options(httpBackend: backend.Address,
                edit: c => c["ReverseProxy"]!["Clusters"]!["model-http"]!["Metadata"] = new JsonObject { ["BackendApiKey"] = "file:" + file }));
            using var client = new HttpClient { BaseAddress = gw.Http };
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AcmeKey);
            async Task<string?> SendAsync()
            {
                using var response = await client.PostAsync("/v1/chat/completions", Chat());
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                var seen = backend.Seen.Last();
                return seen.Headers.TryGetValue("authorization", out var a) ? a : null;
            }

            Assert.Equal("Bearer secretvalue-one", await SendAsync());
            using var admin = new HttpClient { BaseAddress = gw.Admin };
            async Task<double> ErrorsAsync() => (await admin.GetStringAsync("/metrics")).Split('\n')
                .Where(l => l.StartsWith("gateway_auth_backend_key_errors_total", StringComparison.Ordinal))
                .Select(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture)).DefaultIfEmpty(0).Sum();
            foreach (Func<Task> breakIt in new Func<Task>[]
            {
                () => File.WriteAllTextAsync(file, ""),
                () => File.WriteAllTextAsync(file, "secretvalue-two\nsecond-line\n"),
                () => { File.Delete(file); return Task.CompletedTask; },
            })
            {
                var before = await ErrorsAsync();
                await breakIt();
                // Each broken state is noticed (the file watcher: a failed re-read is counted) and every request
                // meanwhile carries the last good key, never none.
                await Eventually.TrueAsync(async () =>
                {
                    Assert.Equal("Bearer secretvalue-one", await SendAsync());
                    return await ErrorsAsync() > before;
                }, TimeSpan.FromSeconds(15), () => "a broken backend key file was not noticed");
                Assert.Equal("Bearer secretvalue-one", await SendAsync());
            }

            Assert.Contains(gw.Logs.Entries, e => e.EventId.Id == 6201 && e.Level == Microsoft.Extensions.Logging.LogLevel.Warning);
            Assert.DoesNotContain(gw.Logs.Entries, e => e.Message.Contains("secretvalue", StringComparison.Ordinal));

            // A good key again is picked up.
            await File.WriteAllTextAsync(file, "secretvalue-three");
            await Eventually.TrueAsync(async () => await SendAsync() == "Bearer secretvalue-three", TimeSpan.FromSeconds(15), () => "the rotated key was not picked up");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task Stranger_review_R8_underscore_tenant_and_key_headers_are_not_forwarded()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var gw = await GatewayHarness.StartAsync(Options(httpBackend: backend.Address));
        using var client = new HttpClient { BaseAddress = gw.Http };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat() };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", AcmeKey);
        request.Headers.TryAddWithoutValidation("x_gateway_tenant", "globex");
        request.Headers.TryAddWithoutValidation("X_Gateway-Tenant", "globex");
        request.Headers.TryAddWithoutValidation("x_api_key", "client-secret");
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(request)).StatusCode);
        var seen = Assert.Single(backend.Seen);
        Assert.Equal("acme", seen.Headers["x-gateway-tenant"]);
        Assert.DoesNotContain(seen.Headers, h => h.Key.Contains('_', StringComparison.Ordinal));
    }

    [Fact]
    public async Task Stranger_review_R8_query_string_keys_and_x_goog_api_key_are_redacted_in_recordings()
    {
        var options = Options();
        await using var rec = await RecordingHarness.StartAsync(null, options);
        await rec.StartRecordingAsync("redact");
        using var client = new HttpClient { BaseAddress = rec.H.Http };
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions?api_key=query-secret-1&key=query-secret-2&access_token=query-secret-3&keep=visible") { Content = Chat() })
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", AcmeKey);
            request.Headers.TryAddWithoutValidation("x-goog-api-key", "goog-secret");
            Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(request)).StatusCode);
        }

        await rec.WaitAccountedAsync(1, TimeSpan.FromSeconds(10));
        await rec.StopRecordingAsync("redact");
        var record = Assert.Single(await rec.ReadAsync("redact"));
        var json = System.Text.Encoding.UTF8.GetString(Contracts.Recording.RecordingSerializer.Serialize(record));
        Assert.DoesNotContain("query-secret", json, StringComparison.Ordinal);
        Assert.DoesNotContain("goog-secret", json, StringComparison.Ordinal);
        Assert.Contains("keep=visible", json, StringComparison.Ordinal);
    }
}

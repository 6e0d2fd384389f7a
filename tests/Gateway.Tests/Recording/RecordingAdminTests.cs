using System.Net;
using System.Text.Json;

namespace Gateway.Tests.Recording;

/// <summary>Recordings start and stop at run time through the admin listener, and at boot from configuration.</summary>
public sealed class RecordingAdminTests
{
    [Fact]
    public async Task Recordings_start_stop_list_and_delete_without_a_restart()
    {
        await using var r = await RecordingHarness.StartAsync(null);
        using var http = new HttpClient { BaseAddress = r.H.Http };

        Assert.Equal(HttpStatusCode.BadRequest, (await r.Admin.PostAsync("/admin/recordings/bad%20name/start", null)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await r.Admin.PostAsync("/admin/recordings/never/stop", null)).StatusCode);

        (await http.PostAsync("/v1/generate", Json("""{"prompt":"not recorded","max_tokens":1}"""))).EnsureSuccessStatusCode();
        await r.StartRecordingAsync("live");
        (await http.PostAsync("/v1/generate", Json("""{"prompt":"recorded","max_tokens":1}"""))).EnsureSuccessStatusCode();
        await r.WaitAccountedAsync(1, TimeSpan.FromSeconds(10));
        await r.StopRecordingAsync("live");
        (await http.PostAsync("/v1/generate", Json("""{"prompt":"not recorded either","max_tokens":1}"""))).EnsureSuccessStatusCode();
        await Task.Delay(300);

        var list = await r.StatusAsync();
        var live = list.GetProperty("recordings").EnumerateArray().Single(x => x.GetProperty("name").GetString() == "live");
        Assert.Equal("stopped", live.GetProperty("state").GetString());
        Assert.Equal(1, live.GetProperty("count").GetInt64());
        Assert.True(live.GetProperty("size_bytes").GetInt64() > 0);
        Assert.NotNull(live.GetProperty("first").GetString());
        Assert.NotNull(live.GetProperty("last").GetString());
        Assert.Equal("recorded", JsonDocument.Parse((await r.ReadAsync("live")).Single().Request.Body!.Text!).RootElement.GetProperty("prompt").GetString());

        Assert.Equal(HttpStatusCode.NoContent, (await r.Admin.DeleteAsync("/admin/recordings/live")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await r.Admin.DeleteAsync("/admin/recordings/live")).StatusCode);

        // Admin routes stay on the admin listener.
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/admin/recordings")).StatusCode);
    }

    [Fact]
    public async Task A_recording_named_in_configuration_starts_at_boot()
    {
        var options = new GatewayHarness.Options();
        options.Gateway["Gateway:Recording:StartAtBoot"] = "boot";
        await using var r = await RecordingHarness.StartAsync(null, options);
        using var http = new HttpClient { BaseAddress = r.H.Http };

        await TestSupport.Eventually.TrueAsync(async () => (await r.StatusAsync()).GetProperty("recordings").EnumerateArray()
            .Any(x => x.GetProperty("name").GetString() == "boot" && x.GetProperty("state").GetString() == "recording"), TimeSpan.FromSeconds(10), () => "boot recording not running");
        (await http.PostAsync("/v1/generate", Json("""{"prompt":"at boot","max_tokens":1}"""))).EnsureSuccessStatusCode();
        await r.WaitAccountedAsync(1, TimeSpan.FromSeconds(10));
        Assert.Single(await r.ReadAsync("boot"));
    }

    [Fact]
    public async Task Export_and_import_round_trip_and_refuse_bad_paths_and_overwrites_clearly()
    {
        await using var r = await RecordingHarness.StartAsync(null);
        using var http = new HttpClient { BaseAddress = r.H.Http };
        var dir = Directory.CreateTempSubdirectory("gw-import-").FullName;
        try
        {
            await r.StartRecordingAsync("src");
            (await http.PostAsync("/v1/generate", Json("""{"prompt":"exported","max_tokens":1}"""))).EnsureSuccessStatusCode();
            await r.WaitAccountedAsync(1, TimeSpan.FromSeconds(10));
            await r.StopRecordingAsync("src");

            var file = Path.Combine(dir, "copy.jsonl");
            using (var export = await r.Admin.PostAsync($"/admin/recordings/src/export?path={Uri.EscapeDataString(file)}", null))
            {
                Assert.Equal(HttpStatusCode.OK, export.StatusCode);
                Assert.Equal(1, JsonDocument.Parse(await export.Content.ReadAsStringAsync()).RootElement.GetProperty("exchanges").GetInt32());
            }

            Assert.Equal(["copy.jsonl"], Directory.GetFiles(dir).Select(Path.GetFileName)); // the export leaves nothing beside its file (no .lock)

            using (var import = await r.Admin.PostAsync($"/admin/recordings/import?path={Uri.EscapeDataString(file)}", null))
            {
                Assert.Equal(HttpStatusCode.OK, import.StatusCode);
            }

            Assert.Equal("exported", JsonDocument.Parse((await r.ReadAsync("copy")).Single().Request.Body!.Text!).RootElement.GetProperty("prompt").GetString());

            // A second import under the same name would mix two recordings: refused, nothing written.
            await AssertErrorAsync(await r.Admin.PostAsync($"/admin/recordings/import?path={Uri.EscapeDataString(file)}", null), HttpStatusCode.Conflict, "recording_exists");
            Assert.Single(await r.ReadAsync("copy"));

            await AssertErrorAsync(await r.Admin.PostAsync($"/admin/recordings/import?path={Uri.EscapeDataString(dir)}&name=dir", null), HttpStatusCode.BadRequest, "invalid_path");
            var notRecording = Path.Combine(dir, "notes.jsonl");
            await File.WriteAllTextAsync(notRecording, "hello\nworld\n");
            await AssertErrorAsync(await r.Admin.PostAsync($"/admin/recordings/import?path={Uri.EscapeDataString(notRecording)}", null), HttpStatusCode.BadRequest, "not_a_recording");
            Assert.DoesNotContain((await r.StatusAsync()).GetProperty("recordings").EnumerateArray(), x => x.GetProperty("name").GetString() == "notes");
            await AssertErrorAsync(await r.Admin.PostAsync($"/admin/recordings/import?path={Uri.EscapeDataString(Path.Combine(dir, "absent.jsonl"))}", null), HttpStatusCode.NotFound, "file_not_found");
            await AssertErrorAsync(await r.Admin.PostAsync("/admin/recordings/src/export?path=out.txt", null), HttpStatusCode.BadRequest, "invalid_path");
            await AssertErrorAsync(await r.Admin.PostAsync($"/admin/recordings/never/export?path={Uri.EscapeDataString(Path.Combine(dir, "n.jsonl"))}", null), HttpStatusCode.NotFound, null);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task AssertErrorAsync(HttpResponseMessage response, HttpStatusCode status, string? code)
    {
        using (response)
        {
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(status == response.StatusCode, $"expected {(int)status}, got {(int)response.StatusCode}: {body}");
            var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
            if (code is not null)
            {
                Assert.Equal(code, error.GetProperty("code").GetString());
            }
        }
    }

    private static StringContent Json(string body) => new(body, System.Text.Encoding.UTF8, "application/json");
}

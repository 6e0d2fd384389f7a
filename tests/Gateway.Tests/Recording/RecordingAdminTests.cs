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

    private static StringContent Json(string body) => new(body, System.Text.Encoding.UTF8, "application/json");
}

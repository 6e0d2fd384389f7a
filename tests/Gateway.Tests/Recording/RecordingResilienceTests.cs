using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Contracts.Recording;
using TestSupport;

namespace Gateway.Tests.Recording;

/// <summary>Recording never slows or breaks the proxy: Redis going away, a steady 1000 requests/s, round trips between stores.</summary>
[Collection(SerialTests.Name)]
public sealed class RecordingResilienceTests
{
    [Fact]
    public async Task Redis_stopped_mid_run_the_gateway_keeps_serving_drops_are_counted_and_recording_resumes()
    {
        await using var redis = await RedisServer.StartAsync();
        var options = new GatewayHarness.Options();
        options.Gateway["Gateway:Recording:QueueCapacity"] = "20";
        options.Gateway["Gateway:Recording:RetryFor"] = "00:00:01";
        await using var r = await RecordingHarness.StartAsync(redis, options);
        await r.StartRecordingAsync("outage");
        using var http = new HttpClient { BaseAddress = r.H.Http, Timeout = TimeSpan.FromSeconds(10) };
        long served = 0;
        var servedByPhase = new Dictionary<string, long>();
        var failures = new List<string>();

        async Task SendForAsync(TimeSpan duration, string phase)
        {
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < duration)
            {
                using var response = await http.PostAsync("/v1/generate", new StringContent($$"""{"prompt":"{{phase}}","max_tokens":1}""", Encoding.UTF8, "application/json"));
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    served++;
                    servedByPhase[phase] = servedByPhase.GetValueOrDefault(phase) + 1;
                }
                else
                {
                    failures.Add($"{phase}: {(int)response.StatusCode}");
                }

                await Task.Delay(10);
            }
        }

        await SendForAsync(TimeSpan.FromSeconds(1), "before");
        await redis.StopAsync();
        await SendForAsync(TimeSpan.FromSeconds(3), "during");
        var duringStatus = await r.StatusAsync();
        await redis.RestartAsync();
        await Task.Delay(TimeSpan.FromSeconds(1)); // the connection comes back by itself
        await SendForAsync(TimeSpan.FromSeconds(2), "after");

        Assert.Empty(failures); // no added errors while Redis was down
        await r.WaitAccountedAsync(served, TimeSpan.FromSeconds(20));
        var status = await r.StatusAsync();
        var written = status.GetProperty("written").GetInt64();
        var dropped = status.GetProperty("dropped").GetInt64();

        Assert.True(dropped > 0, "nothing was dropped although Redis was down for 3 s with a queue of 20");
        Assert.Equal(served, written + dropped); // nothing lost silently
        Assert.False(duringStatus.GetProperty("store_up").GetBoolean());
        Assert.True(status.GetProperty("store_up").GetBoolean());

        // The restarted Redis is empty (no persistence): it holds what was still queued when it came back, then every
        // exchange served after that: recording resumed by itself, losing nothing.
        var records = await r.ReadAsync("outage");
        var phases = records.Select(x => JsonDocument.Parse(x.Request.Body!.Text!).RootElement.GetProperty("prompt").GetString()).ToList();
        Assert.DoesNotContain("before", phases);
        Assert.Equal(servedByPhase["after"], phases.Count(p => p == "after"));
        Assert.InRange(phases.Count(p => p == "during"), 1, 20 + 256); // at most the queue and one batch survive the outage

        // The restarted Redis lost the recording's index entry and state: the next batches wrote them again, so the
        // recording is listed (with its creation time) as before the outage.
        var listed = status.GetProperty("recordings").EnumerateArray().Single(x => x.GetProperty("name").GetString() == "outage");
        Assert.Equal("recording", listed.GetProperty("state").GetString());
        Assert.Equal(records.Count, listed.GetProperty("count").GetInt64());

        using var admin = new HttpClient { BaseAddress = r.H.Admin };
        var metrics = await admin.GetStringAsync("/metrics");
        Assert.Contains(metrics.Split('\n'), l => l.StartsWith("recording_dropped_total{", StringComparison.Ordinal));
    }

    [Fact]
    public async Task No_loss_at_a_steady_1000_requests_per_second_for_20_seconds()
    {
        await using var redis = await RedisServer.StartAsync();
        var options = new GatewayHarness.Options();
        options.Sim["Sim:PerTokenMs"] = "0";
        options.Sim["Sim:PrefillMs"] = "0";
        options.Sim["Sim:Slots"] = "512";
        await using var r = await RecordingHarness.StartAsync(redis, options);
        await r.StartRecordingAsync("steady");
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 256 }) { BaseAddress = r.H.Http, Timeout = TimeSpan.FromSeconds(30) };
        var body = Encoding.UTF8.GetBytes("""{"prompt":"steady","max_tokens":1}""");

        const int Rate = 1000;
        var duration = TimeSpan.FromSeconds(20);
        var total = (int)(Rate * duration.TotalSeconds);
        var tasks = new List<Task<HttpStatusCode>>(total);
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < total; i++)
        {
            // Open model: request i leaves at i/Rate seconds, whatever the earlier ones are doing.
            var due = TimeSpan.FromSeconds((double)i / Rate);
            var wait = due - clock.Elapsed;
            if (wait > TimeSpan.FromMilliseconds(1))
            {
                await Task.Delay(wait);
            }

            tasks.Add(SendAsync());
        }

        var statuses = await Task.WhenAll(tasks);
        var served = statuses.Count(s => s == HttpStatusCode.OK);
        Assert.Equal(total, served);
        Assert.True(clock.Elapsed < duration * 2, $"the load took {clock.Elapsed}: far from a steady {Rate}/s");

        await r.WaitAccountedAsync(served, TimeSpan.FromSeconds(30));
        var status = await r.StatusAsync();
        Assert.Equal(0, status.GetProperty("dropped").GetInt64());
        var info = await r.Store.GetAsync("steady", CancellationToken.None);
        Assert.Equal(served, info!.Count);

        async Task<HttpStatusCode> SendAsync()
        {
            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            using var response = await http.PostAsync("/v1/generate", content);
            return response.StatusCode;
        }
    }

    [Fact]
    public async Task File_store_round_trips_the_same_data_as_Redis()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var r = await RecordingHarness.StartAsync(redis);
        await r.StartRecordingAsync("trip");
        using var http = new HttpClient { BaseAddress = r.H.Http };
        for (var i = 0; i < 5; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
            {
                Content = new StringContent($$"""{"messages":[{"role":"user","content":"turn {{i}}"}],"max_tokens":2,"stream":{{(i % 2 == 0 ? "true" : "false")}}}""", Encoding.UTF8, "application/json"),
            };
            request.Headers.Add("x-session-id", "s" + (i % 2));
            (await http.SendAsync(request)).EnsureSuccessStatusCode();
        }

        await r.WaitAccountedAsync(5, TimeSpan.FromSeconds(15));
        await r.StopRecordingAsync("trip");
        var dir = Directory.CreateTempSubdirectory("gw-export-").FullName;
        try
        {
            var file = Path.Combine(dir, "trip-export.jsonl");
            (await r.Admin.PostAsync($"/admin/recordings/trip/export?path={Uri.EscapeDataString(file)}", null)).EnsureSuccessStatusCode();
            (await r.Admin.PostAsync($"/admin/recordings/import?path={Uri.EscapeDataString(file)}&name=trip-back", null)).EnsureSuccessStatusCode();

            var original = await r.ReadAsync("trip");
            await using var fileStore = new FileRecordingStore(dir);
            var fromFile = new List<ExchangeRecord>();
            await foreach (var x in fileStore.ReadExchangesAsync("trip-export", CancellationToken.None))
            {
                fromFile.Add(x.Record!);
            }

            var back = await r.ReadAsync("trip-back");
            Assert.Equal(5, original.Count);
            Assert.Equal(Canonical(original), Canonical(fromFile));
            Assert.Equal(Canonical(original), Canonical(back));

            var sessions = (await r.Store.ReadSessionsAsync("trip", CancellationToken.None)).OrderBy(s => s.SessionId).ToList();
            Assert.Equal(sessions, (await fileStore.ReadSessionsAsync("trip-export", CancellationToken.None)).OrderBy(s => s.SessionId).ToList());
            Assert.Equal(sessions, (await r.Store.ReadSessionsAsync("trip-back", CancellationToken.None)).OrderBy(s => s.SessionId).ToList());
            Assert.Equal(new long[] { 3, 2 }, sessions.Select(s => s.Count));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }

        static List<string> Canonical(List<ExchangeRecord> records) =>
            [.. records.Select(x => Encoding.UTF8.GetString(RecordingSerializer.Serialize(x with { Recording = "-" })))];
    }
}

using Microsoft.AspNetCore.Builder;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using ModelSim;

namespace Gateway.Tests.Routing;

/// <summary>
/// Issue 14, "Pick the replica": one cluster of ModelSim replicas (each with its prefix cache and vLLM metrics) behind
/// the InferenceAware policy, over real sockets. Requests that share a long prefix go to one replica (whose prefix
/// cache then hits); different prefixes spread; a hot prefix beyond the load bound spills; a replica whose metrics
/// cannot be read is still used, scored by in-flight count, and that is counted.
/// </summary>
public sealed class InferenceAwareTests
{
    private static async Task<ModelSimServer[]> StartReplicasAsync(int count, int perTokenMs = 1)
    {
        var replicas = new ModelSimServer[count];
        for (var i = 0; i < count; i++)
        {
            replicas[i] = await ModelSimServer.StartAsync(new Dictionary<string, string?>
            {
                ["Sim:PerTokenMs"] = perTokenMs.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["Sim:PrefillMs"] = "1",
                ["Sim:AcceptAnyModel"] = "true",
            });
        }

        return replicas;
    }

    private static GatewayHarness.Options Fleet(ModelSimServer[] replicas, Action<JsonObject>? destination = null)
    {
        var options = new GatewayHarness.Options();
        options.Edit = config =>
        {
            var destinations = new JsonObject();
            for (var i = 0; i < replicas.Length; i++)
            {
                var d = new JsonObject { ["Address"] = replicas[i].HttpAddress.ToString() };
                if (i == replicas.Length - 1 && destination is not null)
                {
                    destination(d);
                }

                destinations[$"r{i}"] = d;
            }

            var cluster = config["ReverseProxy"]!["Clusters"]!["model-http"]!.AsObject();
            cluster["Destinations"] = destinations;
            cluster["LoadBalancingPolicy"] = "InferenceAware";
            cluster["Metadata"] = new JsonObject { ["MetricsInterval"] = "0.05" };
        };
        return options;
    }

    private static async ValueTask DisposeAllAsync(ModelSimServer[] replicas)
    {
        foreach (var r in replicas)
        {
            await r.DisposeAsync();
        }
    }

    /// <summary>A system prompt of about 1500 characters, distinct from the first character on for each <paramref name="name"/>.</summary>
    private static string Prefix(string name) =>
        name + ": " + string.Concat(Enumerable.Repeat("You are a careful assistant for the fleet team; answer in full sentences and cite the runbook. ", 16));

    private static async Task ChatAsync(HttpClient http, string system, string user, int maxTokens = 4)
    {
        using var response = await http.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "sim-llm",
            messages = new[] { new { role = "system", content = system }, new { role = "user", content = user } },
            max_tokens = maxTokens,
        });
        Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
    }

    private static async Task<string> MetricsAsync(GatewayHarness h)
    {
        using var admin = new HttpClient { BaseAddress = h.Admin };
        return await admin.GetStringAsync("/metrics");
    }

    private static bool HasSeries(string metrics, string name, string label) =>
        metrics.Split('\n').Any(l => l.StartsWith(name, StringComparison.Ordinal) && l.Contains(label, StringComparison.Ordinal));

    [Fact]
    public async Task Requests_sharing_a_long_prefix_go_to_the_same_replica_whose_prefix_cache_hits()
    {
        var replicas = await StartReplicasAsync(4);
        try
        {
            await using var h = await GatewayHarness.StartAsync(Fleet(replicas));
            using var http = new HttpClient { BaseAddress = h.Http };
            var system = Prefix("shared");
            for (var i = 0; i < 6; i++)
            {
                await ChatAsync(http, system, $"question {i}: what does step {i} of the runbook say?");
            }

            var counts = replicas.Select(static r => r.Stats.Requests).ToArray();
            Assert.True(counts.Count(static c => c == 6) == 1 && counts.Sum() == 6, string.Join(",", counts));
            var home = replicas.Single(static r => r.Stats.Requests == 6);
            Assert.True(home.Stats.PrefixCacheHits > 0, "the replica that served the prefix found it cached");

            var metrics = await MetricsAsync(h);
            Assert.True(HasSeries(metrics, "gateway_routing_decisions_total", "reason=\"prefix_hit\""), metrics);
        }
        finally
        {
            await DisposeAllAsync(replicas);
        }
    }

    /// <summary>
    /// The exchange record names the replica chosen (<c>destination</c>) and how much of the prompt it had served
    /// (<c>prefix_match_chars</c>): the first request of a prefix matches nothing, a second sharing its 1,500-character
    /// system prompt goes to the same replica with a positive match (a whole number of 64-character blocks, no longer
    /// than the shared text), which the replica's prefix cache confirms.
    /// </summary>
    [Fact]
    public async Task The_exchange_record_names_the_chosen_replica_and_the_prefix_match_length()
    {
        var replicas = await StartReplicasAsync(3);
        try
        {
            await using var rec = await Gateway.Tests.Recording.RecordingHarness.StartAsync(null, Fleet(replicas));
            await rec.StartRecordingAsync("fleet");
            using var http = new HttpClient { BaseAddress = rec.H.Http };
            var system = Prefix("recorded");
            await ChatAsync(http, system, "first question");
            await ChatAsync(http, system, "second question, sharing the system prompt");
            await rec.StopRecordingAsync("fleet");
            await rec.WaitAccountedAsync(2, TimeSpan.FromSeconds(20));

            var records = (await rec.ReadAsync("fleet")).OrderBy(static r => r.Sequence).ToList();
            Assert.Equal(2, records.Count);
            var (first, second) = (records[0], records[1]);
            Assert.Matches("^r[0-2]$", first.Destination);
            Assert.Equal(first.Destination, second.Destination);
            Assert.Equal(0, first.PrefixMatchChars);
            var shared = "system\n".Length + system.Length + "\nuser\n".Length; // the chat text both prompts begin with
            Assert.InRange(second.PrefixMatchChars!.Value, 64, shared);
            Assert.Equal(0, second.PrefixMatchChars.Value % 64);

            var home = replicas[int.Parse(first.Destination!.AsSpan(1), System.Globalization.CultureInfo.InvariantCulture)];
            Assert.Equal(2, home.Stats.Requests);
            Assert.True(home.Stats.PrefixCacheHits > 0, "the recorded replica found the prefix cached");
        }
        finally
        {
            await DisposeAllAsync(replicas);
        }
    }

    /// <summary>
    /// sglang#26263 (its router matched chat requests by their first message only, usually the shared system prompt, so
    /// every conversation behind it looked alike): here a conversation whose system prompt alone is longer than the old
    /// window (64 blocks, 4,096 characters) is matched past it. Turn 2 resends turn 1 whole, and its recorded match is
    /// turn 1's whole chat text in full blocks, beyond the system prompt, on the replica that served turn 1.
    /// </summary>
    [Fact]
    public async Task A_later_turn_is_matched_past_a_long_shared_system_prompt_sglang_26263()
    {
        var replicas = await StartReplicasAsync(2);
        try
        {
            await using var rec = await Gateway.Tests.Recording.RecordingHarness.StartAsync(null, Fleet(replicas));
            await rec.StartRecordingAsync("turns");
            using var http = new HttpClient { BaseAddress = rec.H.Http };
            var system = string.Concat(Prefix("long"), Prefix("longer"), Prefix("longest"), Prefix("longest yet")); // about 6,000 characters
            Assert.True(system.Length > 64 * 64 + 1000, system.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
            const string User1 = "first question: what does the runbook say about restarts after an upgrade of the fleet?";
            const string Answer = "It says to drain each replica first.";
            const string User2 = "and what about the second step?";
            await ChatAsync(http, system, User1);
            using (var response = await http.PostAsJsonAsync("/v1/chat/completions", new
            {
                model = "sim-llm",
                messages = new[]
                {
                    new { role = "system", content = system }, new { role = "user", content = User1 },
                    new { role = "assistant", content = Answer }, new { role = "user", content = User2 },
                },
                max_tokens = 4,
            }))
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            }

            await rec.StopRecordingAsync("turns");
            await rec.WaitAccountedAsync(2, TimeSpan.FromSeconds(20));
            var records = (await rec.ReadAsync("turns")).OrderBy(static r => r.Sequence).ToList();
            Assert.Equal(2, records.Count);
            Assert.Equal(records[0].Destination, records[1].Destination);
            var turn1 = $"system\n{system}\nuser\n{User1}\n".Length;
            Assert.Equal(turn1 / 64 * 64, records[1].PrefixMatchChars);
            Assert.True(records[1].PrefixMatchChars > system.Length, "matched past the system prompt, into the conversation");
        }
        finally
        {
            await DisposeAllAsync(replicas);
        }
    }

    /// <summary>
    /// Prompts that share nothing spread over the replicas (ties go by rendezvous weight, not to the first destination
    /// listed: litellm#37622 reports its least-busy strategy favouring the first registered deployment).
    /// </summary>
    /// <summary>
    /// higress#3810: a conversation opened with "hi" (shorter than one 64-character block, so nothing to match) lost its
    /// replica on the second turn, which carries the first answer. Here the client's session id (x-session-id) keeps
    /// each of six conversations on the replica of its first turn; by load alone each second turn would have had one
    /// chance in four. A conversation without a session id is still routed (by prefix and load).
    /// </summary>
    [Fact]
    public async Task A_conversation_opened_with_a_short_turn_stays_on_its_replica_by_session_higress_3810()
    {
        var replicas = await StartReplicasAsync(4);
        try
        {
            await using var rec = await Gateway.Tests.Recording.RecordingHarness.StartAsync(null, Fleet(replicas));
            await rec.StartRecordingAsync("short");
            using var http = new HttpClient { BaseAddress = rec.H.Http };
            const int Sessions = 6;
            for (var c = 0; c < Sessions; c++)
            {
                await SendAsync(http, $"conversation-{c}", [new { role = "user", content = "hi" }]);
                await SendAsync(http, $"conversation-{c}",
                [
                    new { role = "user", content = "hi" },
                    new { role = "assistant", content = $"Hello! I am the assistant of conversation {c}; let me think about how to help you with the fleet, step by step, in detail." },
                    new { role = "user", content = "tell me more" },
                ]);
            }

            await SendAsync(http, null, [new { role = "user", content = "hi" }]); // no session: still answered

            await rec.StopRecordingAsync("short");
            await rec.WaitAccountedAsync(2 * Sessions + 1, TimeSpan.FromSeconds(20));
            var records = await rec.ReadAsync("short");
            Assert.Equal(2 * Sessions + 1, records.Count);
            foreach (var conversation in records.Where(static r => r.SessionId!.StartsWith("conversation-", StringComparison.Ordinal)).GroupBy(static r => r.SessionId))
            {
                var turns = conversation.OrderBy(static r => r.Sequence).ToList();
                Assert.Equal(2, turns.Count);
                Assert.True(turns[0].Destination == turns[1].Destination, $"{conversation.Key}: turn 1 on {turns[0].Destination}, turn 2 on {turns[1].Destination}");
            }
        }
        finally
        {
            await DisposeAllAsync(replicas);
        }

        static async Task SendAsync(HttpClient http, string? session, object[] messages)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
            {
                Content = JsonContent.Create(new { model = "sim-llm", messages, max_tokens = 4 }),
            };
            if (session is not null)
            {
                request.Headers.Add("x-session-id", session);
            }

            using var response = await http.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
    }

    [Fact]
    public async Task Different_prefixes_spread_over_the_replicas()
    {
        var replicas = await StartReplicasAsync(4);
        try
        {
            await using var h = await GatewayHarness.StartAsync(Fleet(replicas));
            using var http = new HttpClient { BaseAddress = h.Http };
            for (var i = 0; i < 16; i++)
            {
                await ChatAsync(http, Prefix($"tenant-{i}"), "hello");
            }

            var counts = replicas.Select(static r => r.Stats.Requests).ToArray();
            Assert.True(counts.Count(static c => c > 0) >= 3 && counts.Max() <= 8, string.Join(",", counts));
            Assert.True(HasSeries(await MetricsAsync(h), "gateway_routing_decisions_total", "reason=\"fallback\""));
        }
        finally
        {
            await DisposeAllAsync(replicas);
        }
    }

    /// <summary>
    /// A hot prefix fills its replica up to the load bound and then spills (edutelligence#838: prefix-aware routing kept
    /// a low-load fleet's requests on one node while others idled; production-stack#1035 and aibrix#2382: a hot prefix
    /// piling onto the one engine holding it).
    /// </summary>
    [Fact]
    public async Task A_hot_prefix_beyond_the_load_factor_spills_to_other_replicas()
    {
        var replicas = await StartReplicasAsync(4, perTokenMs: 20);
        try
        {
            await using var h = await GatewayHarness.StartAsync(Fleet(replicas));
            using var http = new HttpClient { BaseAddress = h.Http };
            var system = Prefix("hot");
            await ChatAsync(http, system, "warm up", maxTokens: 1);
            var home = replicas.Single(static r => r.Stats.Requests == 1);

            await Task.WhenAll(Enumerable.Range(0, 10).Select(i => ChatAsync(http, system, $"burst {i}", maxTokens: 30)));

            var counts = replicas.Select(static r => r.Stats.Requests).ToArray();
            Assert.Equal(11, counts.Sum());
            Assert.True(home.Stats.Requests >= 3, $"the prefix's replica takes up to the bound: {string.Join(",", counts)}");
            Assert.True(home.Stats.Requests <= 8, $"and no further: {string.Join(",", counts)}");
            Assert.True(counts.Count(static c => c > 0) >= 2, string.Join(",", counts));
            Assert.True(HasSeries(await MetricsAsync(h), "gateway_routing_decisions_total", "reason=\"load\""));
        }
        finally
        {
            await DisposeAllAsync(replicas);
        }
    }

    /// <summary>
    /// Two https replicas with a self-signed certificate made at test time, behind a cluster whose HttpClient accepts
    /// it (<c>DangerousAcceptAnyServerCertificate</c>): the scraper uses the cluster's client, so both replicas'
    /// metrics are read (no scrape failure, no stale score) and the one reporting a deep queue is passed over for the
    /// idle one. With a scraper of its own that validated the certificate, every scrape failed (unreachable) and
    /// both replicas were scored by in-flight count alone, so requests spread over both.
    /// </summary>
    [Fact]
    public async Task Https_replicas_are_scraped_with_the_clusters_tls_settings()
    {
        var dir = Directory.CreateTempSubdirectory("gw-scrape-tls-").FullName;
        try
        {
            using var certificate = TestSupport.TestCertificates.CreateSelfSigned(dir);
            var served = new int[2];
            async Task<TestBackend> StartAsync(int index, int waiting) => await TestBackend.StartAsync(app =>
            {
                app.MapGet("/metrics", () => Microsoft.AspNetCore.Http.Results.Text(
                    $"vllm:num_requests_running{{model_name=\"sim-llm\"}} 0\nvllm:num_requests_waiting{{model_name=\"sim-llm\"}} {waiting}\nvllm:kv_cache_usage_perc{{model_name=\"sim-llm\"}} 0.1\n",
                    "text/plain; version=0.0.4"));
                app.MapPost("/v1/chat/completions", () =>
                {
                    Interlocked.Increment(ref served[index]);
                    return Microsoft.AspNetCore.Http.Results.Json(new { id = "x", @object = "chat.completion", model = "sim-llm", choices = Array.Empty<object>() });
                });
            }, certificate: certificate);

            await using var busy = await StartAsync(0, waiting: 40);
            await using var idle = await StartAsync(1, waiting: 0);
            var options = new GatewayHarness.Options();
            options.Edit = config =>
            {
                var cluster = config["ReverseProxy"]!["Clusters"]!["model-http"]!.AsObject();
                cluster["Destinations"] = new JsonObject
                {
                    ["busy"] = new JsonObject { ["Address"] = busy.Address.ToString() },
                    ["idle"] = new JsonObject { ["Address"] = idle.Address.ToString() },
                };
                cluster["LoadBalancingPolicy"] = "InferenceAware";
                cluster["Metadata"] = new JsonObject { ["MetricsInterval"] = "0.05" };
                cluster["HttpClient"] = new JsonObject { ["DangerousAcceptAnyServerCertificate"] = true };
            };
            await using var h = await GatewayHarness.StartAsync(options);
            Assert.StartsWith("https://", busy.Address.ToString(), StringComparison.Ordinal);
            using var http = new HttpClient { BaseAddress = h.Http };

            // Let a few scrape rounds pass (20 intervals), then send prompts that share nothing.
            await Task.Delay(TimeSpan.FromSeconds(1));
            for (var i = 0; i < 8; i++)
            {
                await ChatAsync(http, Prefix($"caller-{i}"), "hello");
            }

            var metrics = await MetricsAsync(h);
            Assert.False(HasSeries(metrics, "gateway_routing_scrape_failures_total", "cluster=\"model-http\""), metrics);
            Assert.False(HasSeries(metrics, "gateway_routing_stale_scores_total", "cluster=\"model-http\""), metrics);
            Assert.True(served[1] == 8 && served[0] == 0, $"busy {served[0]}, idle {served[1]}: the deep queue scraped over https is passed over");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// llm-d-router#2822: its scorers read a never-scraped endpoint's zero-value metrics as idle and ranked it best, so it
    /// took every request. Here a replica whose metrics were never read is scored by the requests the gateway has in
    /// flight to it: a burst of slow requests with unrelated prompts is shared with the scraped replica, not piled on
    /// the unknown one.
    /// </summary>
    [Fact]
    public async Task A_never_scraped_replica_is_not_taken_for_idle_while_requests_are_in_flight_to_it()
    {
        var replicas = await StartReplicasAsync(2, perTokenMs: 20);
        try
        {
            await using var h = await GatewayHarness.StartAsync(Fleet(replicas, static d => d["Metadata"] = new JsonObject { ["MetricsPath"] = "/never" }));
            using var http = new HttpClient { BaseAddress = h.Http };
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (!HasSeries(await MetricsAsync(h), "gateway_routing_scrape_failures_total", "reason=\"status\""))
            {
                Assert.True(DateTime.UtcNow < deadline, "the failed scrape is counted");
                await Task.Delay(50);
            }

            // Ten requests of about 600 ms each, sent 20 ms apart: each choice sees the ones before it in flight.
            var burst = new List<Task>();
            for (var i = 0; i < 10; i++)
            {
                burst.Add(ChatAsync(http, Prefix($"burst-{i}"), "hello", maxTokens: 30));
                await Task.Delay(20);
            }

            await Task.WhenAll(burst);
            var counts = replicas.Select(static r => r.Stats.Requests).ToArray();
            Assert.True(counts[1] is >= 2 and <= 8, $"scraped {counts[0]}, never scraped {counts[1]}: the unknown replica is not taken for idle");
            Assert.True(HasSeries(await MetricsAsync(h), "gateway_routing_stale_scores_total", "cluster=\"model-http\""));
        }
        finally
        {
            await DisposeAllAsync(replicas);
        }
    }

    [Fact]
    public async Task A_replica_whose_metrics_cannot_be_read_is_still_used_scored_by_in_flight_and_counted()
    {
        var replicas = await StartReplicasAsync(3);
        try
        {
            await using var h = await GatewayHarness.StartAsync(Fleet(replicas, static d => d["Metadata"] = new JsonObject { ["MetricsPath"] = "/no-metrics-here" }));
            using var http = new HttpClient { BaseAddress = h.Http };

            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (!HasSeries(await MetricsAsync(h), "gateway_routing_scrape_failures_total", "reason=\"status\""))
            {
                Assert.True(DateTime.UtcNow < deadline, "the failed scrape is counted");
                await Task.Delay(50);
            }

            for (var i = 0; i < 12; i++)
            {
                await ChatAsync(http, Prefix($"client-{i}"), "hello");
            }

            var counts = replicas.Select(static r => r.Stats.Requests).ToArray();
            Assert.True(counts[2] > 0, $"the replica without metrics still serves: {string.Join(",", counts)}");
            // Polled: the exporter may answer a scrape from its short cache (the wait loop above scraped just before).
            var metrics = "";
            deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
            while (!HasSeries(metrics = await MetricsAsync(h), "gateway_routing_stale_scores_total", "cluster=\"model-http\""))
            {
                Assert.True(DateTime.UtcNow < deadline, metrics);
                await Task.Delay(100);
            }

            Assert.Contains(h.Logs.Entries, static e => e.Message.Contains("r2", StringComparison.Ordinal) && e.Message.Contains("could not be read", StringComparison.Ordinal));
        }
        finally
        {
            await DisposeAllAsync(replicas);
        }
    }
}

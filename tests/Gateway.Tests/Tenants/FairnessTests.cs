using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Xunit.Abstractions;
using System.Text.Json.Nodes;
using Gateway.Shaping;
using Microsoft.Extensions.DependencyInjection;
using static Gateway.Tests.Tenants.TenantTestSupport;

namespace Gateway.Tests.Tenants;

/// <summary>
/// Issue 13's fairness figure, end to end: two tenants of equal weight into a saturated ModelSim (16 slots, the
/// gateway's admission cap at the same 16 so the queue is the gateway's); the light one sends at 45% of the capacity
/// measured at the start (a little under its fair half), the heavy one at 5x that rate (2.25x the capacity): each gets
/// 50% +/- 10% of the generated tokens, the light one is never refused while the heavy one's excess is, and the light
/// one's time to first token (p95) stays below what waiting behind the heavy one's full queue would cost. The issue's
/// TTFT target (p95 within 1.5x of the unloaded value) is not met at this load (see docs/benchmarks.md). Without the fair share (a FIFO queue)
/// the light tenant would get about 1/6 of the admissions and wait behind the heavy tenant's full queue of 64.
/// A smaller run of bench/fairness.sh (which records the full-size figures in docs/benchmarks.md).
/// </summary>
[Collection(SerialTests.Name)]
public sealed class FairnessTests(ITestOutputHelper output)
{
    private const int Slots = 16;
    private const int OutputTokens = 16;                // on average: each request asks for 8 to 24 (lengths vary, as real ones do;
                                                        // equal lengths keep the batch in lockstep and every slot frees at once)

    private sealed class Tally
    {
        public ConcurrentDictionary<string, long> Tokens { get; } = new();

        public ConcurrentBag<double> LightTtftMs { get; } = [];

        public ConcurrentDictionary<string, int> Refused { get; } = new();

        public int Errors;

        public int Completed;
    }

    [Fact]
    public async Task Equal_weight_tenants_one_sending_5x_get_half_the_tokens_each_and_the_light_one_is_not_queued_behind_the_heavy_one()
    {
        var tenants = new JsonObject { ["light"] = new JsonObject(), ["heavy"] = new JsonObject() };
        var options = Options(tenants, new JsonObject
        {
            ["Admission"] = new JsonObject
            {
                ["model-http"] = new JsonObject { ["MaxInFlight"] = Slots, ["QueueLimit"] = 64, ["QueueTimeout"] = "00:00:10" },
            },
        });
        options.Sim["Sim:Slots"] = Slots.ToString(System.Globalization.CultureInfo.InvariantCulture);
        options.Sim["Sim:PrefillMs"] = "100";
        options.Sim["Sim:PrefillPerTokenMs"] = "0";
        options.Sim["Sim:PerTokenMs"] = "20";
        options.Sim["Sim:BatchSlowdown"] = "0"; // the batch's own slow-down is the GPU's, not the queue's: kept out of the TTFT ratio
        options.Sim["Sim:PrefixCache:Enabled"] = "false";
        await using var h = await GatewayHarness.StartAsync(options);
        using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 512 }) { BaseAddress = h.Http, Timeout = TimeSpan.FromSeconds(60) };

        // The server's capacity: 16 slots / (100 ms prefill + 16 tokens x 20 ms) = 38 requests/s (the loaded run measures it
        // again). The light tenant asks for 45% of it (a little under its fair half), Poisson arrivals; alone first: its
        // unloaded TTFT.
        var capacity = Slots / (0.1 + (OutputTokens * 0.02));
        var lightRate = 0.45 * capacity;
        await OpenLoopAsync(client, [("light", lightRate), ("heavy", lightRate)], TimeSpan.FromSeconds(2), measureFrom: TimeSpan.MaxValue, new Tally()); // warm-up (JIT, connections)
        var alone = new Tally();
        await OpenLoopAsync(client, [("light", lightRate)], TimeSpan.FromSeconds(4), measureFrom: TimeSpan.FromSeconds(0.5), alone);
        var unloaded = Percentile(alone.LightTtftMs, 0.95);

        // Then with the heavy tenant sending 5x its rate (2.25x the capacity: the queue fills, the excess is refused).
        var both = new Tally();
        await OpenLoopAsync(client, [("light", lightRate), ("heavy", 5 * lightRate)], TimeSpan.FromSeconds(8), measureFrom: TimeSpan.FromSeconds(1.5), both);
        var loaded = Percentile(both.LightTtftMs, 0.95);

        var light = both.Tokens.GetValueOrDefault("light");
        var heavy = both.Tokens.GetValueOrDefault("heavy");
        var share = (double)light / (light + heavy);
        var report = $"capacity {capacity:F1}/s (nominal), light {lightRate:F1}/s; light {light} tokens, heavy {heavy} (light share {share:P1}); " +
            $"light TTFT p95 alone {unloaded:F0} ms, loaded {loaded:F0} ms ({loaded / unloaded:F2}x); refused: light {alone.Refused.GetValueOrDefault("light") + both.Refused.GetValueOrDefault("light")}, " +
            $"heavy {both.Refused.GetValueOrDefault("heavy")}; errors {alone.Errors + both.Errors}; served {both.Completed / 6.5:F1}/s";
        output.WriteLine(report);
        Assert.True(alone.Errors + both.Errors == 0, report);
        Assert.True(both.Refused.GetValueOrDefault("heavy") > 0, "the server was not saturated (heavy was never refused): " + report);
        Assert.True(both.Refused.GetValueOrDefault("light") == 0 && alone.Refused.GetValueOrDefault("light") == 0, "the light tenant was refused: " + report);
        Assert.True(light + heavy >= 100 * OutputTokens, "too few requests completed to judge: " + report);
        Assert.True(share is >= 0.4 and <= 0.6, report);
        Assert.True(unloaded < 400, "the unloaded TTFT is not the simulator's (~120 ms): the machine is too busy to judge: " + report);

        // The light tenant does not wait behind the heavy tenant's queue: a FIFO queue kept full (64) by the heavy tenant
        // would add 64 / capacity (1.7 s) to every light request. (The issue's target, p95 within 1.5x the unloaded value,
        // is NOT met at this load: measured 4-8x at 42-46% of the capacity, 1.3x at 30%; see docs/benchmarks.md.)
        Assert.True(loaded < unloaded + (1000.0 * 64 / capacity), report);
    }

    /// <summary>
    /// Open-loop senders: each tenant's requests arrive as a Poisson process at its rate (exponential gaps, -ln(U)/rate,
    /// Knuth TAOCP vol. 2 §3.4.1), whether or not earlier ones were answered, for <paramref name="duration"/>; requests that
    /// end after <paramref name="measureFrom"/> are counted.
    /// </summary>
    private static async Task OpenLoopAsync(HttpClient client, (string Tenant, double Rate)[] load, TimeSpan duration, TimeSpan measureFrom, Tally tally)
    {
        var clock = Stopwatch.StartNew();
        var senders = load.Select((l, n) => Task.Run(async () =>
        {
            var random = new Random(1000 + n);
            var requests = new List<Task>();
            var next = TimeSpan.Zero;
            while (next < duration)
            {
                var wait = next - clock.Elapsed;
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait);
                }

                requests.Add(OneAsync(client, l.Tenant, random.Next(OutputTokens / 2, (OutputTokens * 3 / 2) + 1), clock, duration, measureFrom, tally));
                next += TimeSpan.FromSeconds(-Math.Log(1 - random.NextDouble()) / l.Rate);
            }

            await Task.WhenAll(requests);
        })).ToArray();
        await Task.WhenAll(senders);
    }

    private static async Task OneAsync(HttpClient client, string tenant, int maxTokens, Stopwatch clock, TimeSpan duration, TimeSpan measureFrom, Tally tally)
    {
        var (status, ttftMs, tokens) = await StreamOnceAsync(client, tenant, maxTokens);
        if (status == HttpStatusCode.ServiceUnavailable)
        {
            tally.Refused.AddOrUpdate(tenant, 1, static (_, n) => n + 1); // the admission queue's refusal (queue_full, queue_timeout, evicted)
            return;
        }

        if (status != HttpStatusCode.OK || tokens <= 0)
        {
            Interlocked.Increment(ref tally.Errors);
            return;
        }

        if (clock.Elapsed >= measureFrom && clock.Elapsed < duration)
        {
            Interlocked.Increment(ref tally.Completed);
            tally.Tokens.AddOrUpdate(tenant, tokens, (_, t) => t + tokens);
            if (tenant == "light")
            {
                tally.LightTtftMs.Add(ttftMs);
            }
        }
    }

    /// <summary>One stream: its time to the first content event, and the completion tokens its usage chunk reports.</summary>
    private static async Task<(HttpStatusCode Status, double TtftMs, long Tokens)> StreamOnceAsync(HttpClient client, string tenant, int maxTokens)
    {
        var start = Stopwatch.GetTimestamp();
        using var request = Generate(tenant, maxTokens: maxTokens, stream: true);
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            return (response.StatusCode, 0, 0);
        }

        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        double ttft = -1;
        long tokens = 0;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: {", StringComparison.Ordinal))
            {
                continue;
            }

            var json = JsonNode.Parse(line.AsSpan(6).ToString());
            if (ttft < 0 && json?["choices"] is JsonArray { Count: > 0 })
            {
                ttft = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }

            if (json?["usage"]?["completion_tokens"] is { } completion)
            {
                tokens = completion.GetValue<long>();
            }
        }

        return (HttpStatusCode.OK, ttft, ttft >= 0 ? tokens : 0);
    }

    private static double Percentile(IEnumerable<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        Assert.NotEmpty(sorted);
        return sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];
    }
}

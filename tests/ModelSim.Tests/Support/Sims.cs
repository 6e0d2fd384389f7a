using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ModelSim.Tests.Support;

/// <summary>Starts simulators on free loopback ports and talks to them over real sockets.</summary>
internal static class Sims
{
    /// <summary>Every wait in the tests is bounded by this unless a test says otherwise.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    /// <summary>Starts a simulator; settings are (key without the <c>Sim:</c> prefix, value) pairs.</summary>
    public static async Task<ModelSimServer> StartAsync(params (string Key, object Value)[] settings)
    {
        var dictionary = new Dictionary<string, string?>();
        foreach (var (key, value) in settings)
        {
            dictionary["Sim:" + key] = Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture);
        }

        using var cts = new CancellationTokenSource(Timeout);
        return await ModelSimServer.StartAsync(dictionary, cts.Token);
    }

    /// <summary>An HTTP/1.1 client for the simulator. Disposing an unfinished response closes its connection (no drain),
    /// as a client that gives up does, so the server sees the abort.</summary>
    public static HttpClient Client(ModelSimServer sim) => new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(1), MaxResponseDrainSize = 0 })
    {
        BaseAddress = sim.HttpAddress,
        Timeout = Timeout,
    };

    public static StringContent Json(object body) => new(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");

    public static StringContent RawJson(string body) => new(body, Encoding.UTF8, "application/json");

    /// <summary>POSTs <paramref name="body"/> and parses the JSON answer (any status).</summary>
    public static async Task<(HttpResponseMessage Response, JsonNode? Body)> PostAsync(HttpClient client, string path, object body, CancellationToken cancellationToken = default)
    {
        var response = await client.PostAsync(path, Json(body), cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        return (response, text.Length == 0 ? null : JsonNode.Parse(text));
    }

    /// <summary>POSTs a /v1/generate request and returns the text, checking for 200.</summary>
    public static async Task<string> GenerateAsync(HttpClient client, string prompt, int maxTokens, CancellationToken cancellationToken = default)
    {
        var (response, body) = await PostAsync(client, "/v1/generate", new { prompt, max_tokens = maxTokens }, cancellationToken);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal(maxTokens, (int)body!["tokens"]!);
        return (string)body["text"]!;
    }

    /// <summary>Times one /v1/generate request, in ms.</summary>
    public static async Task<double> TimeGenerateAsync(HttpClient client, string prompt, int maxTokens)
    {
        var start = Stopwatch.GetTimestamp();
        await GenerateAsync(client, prompt, maxTokens);
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    /// <summary>Reads a server-sent event stream, returning each <c>data:</c> payload with the ms since <paramref name="start"/> it arrived;
    /// <paramref name="onEvent"/>, when given, is called with each event's index (0, 1, …) as it is read.</summary>
    public static async Task<List<(string Data, double AtMs)>> ReadSseAsync(HttpResponseMessage response, long start, Action<int>? onEvent = null, CancellationToken cancellationToken = default)
    {
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = new List<(string, double)>();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                events.Add((line["data: ".Length..], Stopwatch.GetElapsedTime(start).TotalMilliseconds));
                onEvent?.Invoke(events.Count - 1);
            }
            else
            {
                Assert.True(line.Length == 0, $"Unexpected SSE line: {line}");
            }
        }

        return events;
    }

    /// <summary>Sends a streaming request with headers-read completion (nothing buffered by the client).</summary>
    public static Task<HttpResponseMessage> SendStreamingAsync(HttpClient client, string path, object body, CancellationToken cancellationToken = default)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = Json(body) };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
        return client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
    }

    /// <summary>Parses the Prometheus text of <c>GET /metrics</c> into name → value.</summary>
    public static async Task<Dictionary<string, double>> ScrapeAsync(HttpClient client)
    {
        var text = await client.GetStringAsync("/metrics");
        var result = new Dictionary<string, double>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith('#'))
            {
                continue;
            }

            var parts = line.Split(' ');
            Assert.Equal(2, parts.Length);
            result[parts[0]] = double.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
        }

        return result;
    }

    /// <summary>
    /// The simulator's time-to-first-token histogram as <c>GET /metrics</c> reports it: (count, sum in ms). The engine
    /// records a token's due time on its schedule less the arrival time, so the sum is exact however late the timer,
    /// the thread pool or the client run: a server-side figure that CPU starvation cannot move.
    /// </summary>
    public static async Task<(double Count, double SumMs)> TtftAsync(HttpClient client)
    {
        var metrics = await ScrapeAsync(client);
        double Sample(string name) => metrics.Single(m => m.Key.StartsWith(name + "{", StringComparison.Ordinal)).Value;
        return (Sample("vllm:time_to_first_token_seconds_count"), Sample("vllm:time_to_first_token_seconds_sum") * 1000);
    }

    /// <summary>Polls <see cref="TtftAsync"/> until the histogram counts at least <paramref name="count"/> first tokens, bounded by <see cref="Timeout"/>.</summary>
    public static async Task<(double Count, double SumMs)> WaitForTtftCountAsync(HttpClient client, double count)
    {
        var start = Stopwatch.GetTimestamp();
        while (true)
        {
            var ttft = await TtftAsync(client);
            if (ttft.Count >= count)
            {
                return ttft;
            }

            Assert.True(Stopwatch.GetElapsedTime(start) < Timeout, $"The TTFT histogram counts {ttft.Count} first tokens, not {count}, after {Timeout}.");
            await Task.Delay(5);
        }
    }

    /// <summary>Waits for <paramref name="condition"/> on the simulator's stats, bounded by <see cref="Timeout"/> unless given.</summary>
    public static Task<SimStats> WaitAsync(this ModelSimServer sim, Func<SimStats, bool> condition, TimeSpan? within = null) =>
        sim.WaitForStatsAsync(condition, within ?? Timeout);

    /// <summary>Checks the bookkeeping invariant every snapshot must satisfy.</summary>
    public static void AssertBalanced(SimStats s) =>
        Assert.True(s.Requests == s.Rejected + s.Failed + s.Completed + s.Cancelled + s.Inflight + s.QueueDepth, $"Unbalanced stats: {s}");
}

using System.Diagnostics;
using System.Globalization;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Grpc.Core;
using Grpc.Net.Client;
using Inference.V1;

namespace Replay.Cli;

/// <summary>
/// <c>replay probe</c>: one quick check per protocol against a gateway or a model server, printing what came back:
/// an OpenAI chat completion and its SSE stream (<c>--http</c>), gRPC <c>Generate</c> and <c>GenerateStream</c>
/// (<c>--grpc</c>), a two-turn WebSocket session on <c>/v1/stream</c> (<c>--websocket</c>). Exit code 0 when every probe
/// succeeded, 1 otherwise. <c>--header</c> (stranger review R9) adds or replaces headers on every probe (gRPC metadata,
/// the WebSocket upgrade), so a gateway that requires a key can be probed.
/// </summary>
internal static class ProbeCommand
{
    /// <summary>Runs the probes; returns the exit code.</summary>
    public static async Task<int> ExecuteAsync(string? httpText, string? grpcText, string? websocketText, bool insecure, TimeSpan timeout, TextWriter output, TextWriter error, CancellationToken cancellationToken,
        IReadOnlyList<KeyValuePair<string, string>>? headers = null)
    {
        headers ??= [];
        Uri? http = null, grpc = null, websocket = null;
        foreach (var (flag, text, schemes) in new[] { ("--http", httpText, "http, https"), ("--grpc", grpcText, "http, https"), ("--websocket", websocketText, "ws, wss") })
        {
            if (text is null)
            {
                continue;
            }

            if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || !schemes.Split(", ").Contains(uri.Scheme))
            {
                await error.WriteLineAsync($"replay probe: {flag} '{text}' is not an absolute {schemes} URL.").ConfigureAwait(false);
                return ExitCodes.UsageOrInput;
            }

            switch (flag)
            {
                case "--http": http = uri; break;
                case "--grpc": grpc = uri; break;
                default: websocket = uri; break;
            }
        }

        if (http is null && grpc is null && websocket is null)
        {
            await error.WriteLineAsync("replay probe: give at least one of --http URL, --grpc URL, --websocket URL.").ConfigureAwait(false);
            return ExitCodes.UsageOrInput;
        }

        SocketsHttpHandler NewHandler()
        {
            var handler = new SocketsHttpHandler();
            if (insecure)
            {
                // --insecure is the user's explicit choice (a self-signed test certificate).
#pragma warning disable CA5359
                handler.SslOptions.RemoteCertificateValidationCallback = static (_, _, _, _) => true;
#pragma warning restore CA5359
            }

            return handler;
        }

        var failures = 0;
        async Task Probe(string name, Func<CancellationToken, Task<string>> probe)
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            cts.CancelAfter(timeout);
            var clock = Stopwatch.StartNew();
            try
            {
                var result = await probe(cts.Token).ConfigureAwait(false);
                await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"{name}: ok in {clock.Elapsed.TotalMilliseconds:F1} ms: {result}")).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is HttpRequestException or RpcException or WebSocketException or OperationCanceledException or JsonException or InvalidOperationException or IOException)
            {
                failures++;
                var reason = ex is OperationCanceledException ? $"no answer within {timeout.TotalSeconds:0.#} s" : ex.Message;
                await error.WriteLineAsync($"{name}: FAILED: {reason}").ConfigureAwait(false);
            }
        }

        if (http is not null)
        {
            using var client = new HttpClient(NewHandler()) { BaseAddress = http, Timeout = Timeout.InfiniteTimeSpan };
            foreach (var (name, value) in headers)
            {
                client.DefaultRequestHeaders.Remove(name);
                client.DefaultRequestHeaders.TryAddWithoutValidation(name, value);
            }
            await Probe("http chat", ct => ChatAsync(client, ct)).ConfigureAwait(false);
            await Probe("http sse", ct => StreamAsync(client, ct)).ConfigureAwait(false);
        }

        if (grpc is not null)
        {
            using var channel = GrpcChannel.ForAddress(grpc, new GrpcChannelOptions { HttpHandler = NewHandler(), DisposeHttpClient = true });
            var client = new Generation.GenerationClient(channel);
            var metadata = new Metadata();
            foreach (var (name, value) in headers)
            {
                metadata.Add(name.ToLowerInvariant(), value);
            }

            await Probe("grpc unary", async ct =>
            {
                var reply = await client.GenerateAsync(new GenerateRequest { Prompt = "probe", MaxTokens = 4, SessionId = "probe" }, metadata, cancellationToken: ct).ConfigureAwait(false);
                return $"{reply.Tokens} tokens: \"{reply.Text.Trim()}\"";
            }).ConfigureAwait(false);
            await Probe("grpc stream", async ct =>
            {
                using var call = client.GenerateStream(new GenerateRequest { Prompt = "probe", MaxTokens = 4, SessionId = "probe" }, metadata, cancellationToken: ct);
                var chunks = 0;
                await foreach (var chunk in call.ResponseStream.ReadAllAsync(ct).ConfigureAwait(false))
                {
                    chunks++;
                }

                return $"{chunks} token messages, status {call.GetStatus().StatusCode}";
            }).ConfigureAwait(false);
        }

        if (websocket is not null)
        {
            await Probe("websocket", ct => WebSocketAsync(websocket, insecure, headers, ct)).ConfigureAwait(false);
        }

        return failures == 0 ? ExitCodes.Ok : 1;
    }

    private static async Task<string> ChatAsync(HttpClient client, CancellationToken cancellationToken)
    {
        using var response = await client.PostAsync("/v1/chat/completions", Body(stream: false), cancellationToken).ConfigureAwait(false);
        var text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new HttpRequestException($"HTTP {(int)response.StatusCode}: {text}");
        }

        using var doc = JsonDocument.Parse(text);
        var usage = doc.RootElement.GetProperty("usage");
        return $"HTTP {(int)response.StatusCode}, {usage.GetProperty("completion_tokens").GetInt32()} tokens: \"{doc.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()?.Trim()}\"";
    }

    private static async Task<string> StreamAsync(HttpClient client, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Body(stream: true) };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new HttpRequestException($"HTTP {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false)}");
        }

        // The same reader as a run's: the shared SSE parser, JSON per event (spacing and line ends do not matter).
        var start = Stopwatch.GetTimestamp();
        using var tokens = new Clients.TokenTimes();
        var sse = await Clients.Readers.SseResponseReader.ReadAsync(await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false), tokens, captureText: false, TimeProvider.System, cancellationToken).ConfigureAwait(false);
        var events = sse.TokenEvents;
        if (!sse.SawDone)
        {
            throw new InvalidOperationException($"the stream ended after {events} events without data: [DONE]");
        }

        var first = tokens.Count > 0 ? Stopwatch.GetElapsedTime(start, tokens.Span[0]).TotalMilliseconds : 0;
        return string.Create(CultureInfo.InvariantCulture, $"{events} token events then [DONE], first after {first:F1} ms");
    }

    private static async Task<string> WebSocketAsync(Uri target, bool insecure, IReadOnlyList<KeyValuePair<string, string>> headers, CancellationToken cancellationToken)
    {
        using var socket = new ClientWebSocket();
        foreach (var (name, value) in headers)
        {
            socket.Options.SetRequestHeader(name, value);
        }

        if (insecure)
        {
#pragma warning disable CA5359
            socket.Options.RemoteCertificateValidationCallback = static (_, _, _, _) => true;
#pragma warning restore CA5359
        }

        var uri = target.AbsolutePath is "" or "/" ? new Uri(target, "/v1/stream") : target;
        await socket.ConnectAsync(uri, cancellationToken).ConfigureAwait(false);
        var turns = new List<int>();
        foreach (var max in new[] { 3, 2 })
        {
            await socket.SendAsync(Encoding.UTF8.GetBytes($$"""{"prompt":"probe","max_tokens":{{max}}}"""), WebSocketMessageType.Text, true, cancellationToken).ConfigureAwait(false);
            var tokens = 0;
            while (true)
            {
                var message = await ReceiveAsync(socket, cancellationToken).ConfigureAwait(false);
                using var doc = JsonDocument.Parse(message);
                if (doc.RootElement.TryGetProperty("error", out var e))
                {
                    throw new InvalidOperationException($"error frame: {e}");
                }

                if (doc.RootElement.TryGetProperty("done", out var d) && d.GetBoolean())
                {
                    break;
                }

                tokens++;
            }

            turns.Add(tokens);
        }

        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "probe done", cancellationToken).ConfigureAwait(false);
        return $"{turns.Count} turns on one connection, {string.Join(" + ", turns)} tokens";
    }

    private static async Task<string> ReceiveAsync(ClientWebSocket socket, CancellationToken cancellationToken)
    {
        var buffer = new byte[4096];
        using var ms = new MemoryStream();
        while (true)
        {
            var result = await socket.ReceiveAsync(buffer, cancellationToken).ConfigureAwait(false);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                throw new InvalidOperationException($"closed by the server: {socket.CloseStatus} {socket.CloseStatusDescription}");
            }

            ms.Write(buffer, 0, result.Count);
            if (result.EndOfMessage)
            {
                return Encoding.UTF8.GetString(ms.ToArray());
            }
        }
    }

    private static StringContent Body(bool stream) => new(
        $$"""{"model":"sim-llm","messages":[{"role":"user","content":"Say hello."}],"max_tokens":8,"stream":{{(stream ? "true" : "false")}}}""",
        Encoding.UTF8, "application/json");
}

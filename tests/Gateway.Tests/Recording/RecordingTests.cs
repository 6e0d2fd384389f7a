using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Contracts.Recording;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Grpc.Core;
using Grpc.Net.Client;
using Inference.V1;
using Gateway.Tests.Listeners;
using TestSupport;

namespace Gateway.Tests.Recording;

/// <summary>Every protocol's exchanges are recorded exactly, in both stores; sessions, redaction, truncation, sampling.</summary>
public sealed class RecordingTests(RedisFixture redis) : IClassFixture<RedisFixture>
{
    public static TheoryData<string> Stores() => ["file", "redis"];

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task Each_protocols_exchange_is_recorded_exactly_streams_unit_by_unit(string store)
    {
        await using var r = await RecordingHarness.StartAsync(store == "redis" ? redis.Server : null);
        var name = "protocols-" + store + "-" + Guid.NewGuid().ToString("N")[..6];
        await r.StartRecordingAsync(name);
        using var http = new HttpClient { BaseAddress = r.H.Http, Timeout = TimeSpan.FromSeconds(30) };

        // HTTP JSON
        var jsonBody = """{"prompt":"record me","max_tokens":3}""";
        using var jsonResponse = await http.PostAsync("/v1/generate?trace=1", new StringContent(jsonBody, Encoding.UTF8, "application/json"));
        var jsonAnswer = await jsonResponse.Content.ReadAsStringAsync();

        // SSE
        using var sseResponse = await http.PostAsync("/v1/chat/completions", new StringContent(
            """{"model":"sim","messages":[{"role":"user","content":"stream"}],"max_tokens":4,"stream":true}""", Encoding.UTF8, "application/json"));
        var sseText = await sseResponse.Content.ReadAsStringAsync();
        var sseEvents = sseText.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);

        // gRPC unary and server streaming
        using var channel = GrpcChannel.ForAddress(r.H.Grpc);
        var grpc = new Generation.GenerationClient(channel);
        var unaryRequest = new GenerateRequest { Prompt = "grpc", MaxTokens = 2 };
        var reply = await grpc.GenerateAsync(unaryRequest);
        var chunks = new List<TokenChunk>();
        using (var call = grpc.GenerateStream(new GenerateRequest { Prompt = "grpc stream", MaxTokens = 3 }))
        {
            await foreach (var c in call.ResponseStream.ReadAllAsync())
            {
                chunks.Add(c);
            }
        }

        // WebSocket: two turns on one connection
        var wsSent = new List<string>();
        var wsReceived = new List<string>();
        using (var socket = new ClientWebSocket())
        {
            await socket.ConnectAsync(new Uri($"ws://{r.H.WebSocket.Authority}/v1/stream"), CancellationToken.None);
            foreach (var turn in new[] { """{"prompt":"one","max_tokens":2}""", """{"prompt":"two","max_tokens":1}""" })
            {
                wsSent.Add(turn);
                await socket.SendAsync(Encoding.UTF8.GetBytes(turn), WebSocketMessageType.Text, true, CancellationToken.None);
                while (true)
                {
                    var frame = await ListenerTests.ReceiveTextAsync(socket, CancellationToken.None);
                    wsReceived.Add(frame);
                    if (frame.Contains("\"done\":true", StringComparison.Ordinal))
                    {
                        break;
                    }
                }
            }

            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
        }

        await r.WaitAccountedAsync(5, TimeSpan.FromSeconds(15));
        await r.StopRecordingAsync(name);
        var records = await r.ReadAsync(name);
        Assert.Equal(5, records.Count);
        Assert.All(records, x => Assert.Equal(name, x.Recording));

        var json = records.Single(x => x.Request.Path == "/v1/generate");
        Assert.Equal((Protocols.Http, false, "http", "openai", "model-http"), (json.Protocol, json.Streamed, json.Listener, json.Route, json.Cluster));
        Assert.Equal(("POST", "?trace=1"), (json.Request.Method, json.Request.Query));
        Assert.Equal(jsonBody, json.Request.Body!.Text);
        Assert.Equal(200, json.Response.Status);
        Assert.Equal(jsonAnswer, json.Response.Body!.Text);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(jsonAnswer))), json.Response.Body.Sha256);
        Assert.True(json.Timing.DurationMs > 0 && json.Timing.FirstByteMs <= json.Timing.DurationMs);
        Assert.Equal(Outcomes.Completed, json.Outcome);

        var sse = records.Single(x => x.Request.Path == "/v1/chat/completions");
        Assert.True(sse.Streamed);
        Assert.Equal(sseEvents, sse.Units!.Select(u => u.Text).ToArray());
        Assert.All(sse.Units!, u => Assert.Equal((Directions.ToClient, UnitKinds.Sse), (u.Dir, u.Kind)));
        Assert.Equal(sse.Units!.Select(u => u.OffsetMs).Order().ToArray(), sse.Units!.Select(u => u.OffsetMs).ToArray());
        Assert.Null(sse.Response.Body!.Text); // a stream's bytes are in its units, not twice
        Assert.Equal(Encoding.UTF8.GetByteCount(sseText), sse.Response.Body.Length);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sseText))), sse.Response.Body.Sha256);

        var unary = records.Single(x => x.Request.Path == "/inference.v1.Generation/Generate");
        Assert.Equal((Protocols.Grpc, 0), (unary.Protocol, unary.Response.GrpcStatus));
        Assert.Equal(unaryRequest, GenerateRequest.Parser.ParseFrom(Convert.FromBase64String(unary.Units!.Single(u => u.Dir == Directions.ToServer).Base64!)));
        Assert.Equal(reply, GenerateReply.Parser.ParseFrom(Convert.FromBase64String(unary.Units!.Single(u => u.Dir == Directions.ToClient).Base64!)));

        var streaming = records.Single(x => x.Request.Path == "/inference.v1.Generation/GenerateStream");
        var recordedChunks = streaming.Units!.Where(u => u.Dir == Directions.ToClient).Select(u => TokenChunk.Parser.ParseFrom(Convert.FromBase64String(u.Base64!))).ToList();
        Assert.Equal(chunks, recordedChunks);
        Assert.Equal(0, streaming.Response.GrpcStatus);

        var ws = records.Single(x => x.Protocol == Protocols.WebSocket);
        Assert.Equal(wsSent, ws.Units!.Where(u => u.Dir == Directions.ToServer && u.Kind == UnitKinds.Text).Select(u => u.Text!).ToList());
        Assert.Equal(wsReceived, ws.Units!.Where(u => u.Dir == Directions.ToClient && u.Kind == UnitKinds.Text).Select(u => u.Text!).ToList());
        Assert.Contains(ws.Units!, u => u.Dir == Directions.ToServer && u.Kind == UnitKinds.Close && u.Text!.StartsWith("1000", StringComparison.Ordinal));
        Assert.Equal(101, ws.Response.Status);
        Assert.StartsWith("ws-", ws.SessionId, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task Sessions_are_grouped_and_ordered_from_each_id_source(string store)
    {
        await using var r = await RecordingHarness.StartAsync(store == "redis" ? redis.Server : null);
        var name = "sessions-" + store + "-" + Guid.NewGuid().ToString("N")[..6];
        await r.StartRecordingAsync(name);
        using var http = new HttpClient(new SocketsHttpHandler { UseCookies = false }) { BaseAddress = r.H.Http, Timeout = TimeSpan.FromSeconds(30) };

        async Task Send(Action<HttpRequestMessage> setup, string body)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/generate") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            setup(request);
            using var response = await http.SendAsync(request);
            response.EnsureSuccessStatusCode();
        }

        for (var i = 1; i <= 3; i++)
        {
            await Send(q => q.Headers.Add("x-session-id", "from-header"), $$"""{"prompt":"h{{i}}","max_tokens":1}""");
            await Send(q => q.Headers.Add("Cookie", "session_id=from-cookie"), $$"""{"prompt":"c{{i}}","max_tokens":1}""");
            await Send(_ => { }, $$"""{"prompt":"j{{i}}","max_tokens":1,"session_id":"from-json"}""");
        }

        await Send(_ => { }, """{"prompt":"anonymous 1","max_tokens":1}""");
        await Send(_ => { }, """{"prompt":"anonymous 2","max_tokens":1}""");

        using var channel = GrpcChannel.ForAddress(r.H.Grpc);
        var grpc = new Generation.GenerationClient(channel);
        for (var i = 0; i < 2; i++)
        {
            await grpc.GenerateAsync(new GenerateRequest { Prompt = "g" + i, MaxTokens = 1 }, new Metadata { { "x-session-id", "from-grpc" } });
        }

        await r.WaitAccountedAsync(13, TimeSpan.FromSeconds(15));
        var records = await r.ReadAsync(name);
        Assert.Equal(13, records.Count);

        foreach (var (session, prefix, count) in new[] { ("from-header", "h", 3), ("from-cookie", "c", 3), ("from-json", "j", 3), ("from-grpc", "g", 2) })
        {
            var exchanges = records.Where(x => x.SessionId == session).ToList();
            Assert.Equal(count, exchanges.Count);
            Assert.Equal(Enumerable.Range(1, count).Select(i => (long)i), exchanges.Select(x => x.Sequence));
            Assert.Equal(exchanges.OrderBy(x => x.Timing.StartUnixMicros).Select(x => x.Id), exchanges.Select(x => x.Id));
            if (prefix != "g")
            {
                Assert.Equal(Enumerable.Range(1, count).Select(i => $"{prefix}{i}"), exchanges.Select(x => JsonDocument.Parse(x.Request.Body!.Text!).RootElement.GetProperty("prompt").GetString()));
            }
        }

        var anonymous = records.Where(x => x.SessionId.StartsWith("gen-", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, anonymous.Count);
        Assert.NotEqual(anonymous[0].SessionId, anonymous[1].SessionId);

        var sessions = await r.Store.ReadSessionsAsync(name, CancellationToken.None);
        var header = sessions.Single(s => s.SessionId == "from-header");
        Assert.Equal(3, header.Count);
        Assert.True(header.FirstSeenUnixMicros < header.LastSeenUnixMicros);
        Assert.StartsWith("ip:", header.Client, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Secrets_are_redacted_and_large_bodies_are_cut_with_length_and_hash_kept()
    {
        await using var backend = await TestBackend.StartAsync(app => app.MapPost("/v1/login", async (HttpContext ctx) =>
        {
            ctx.Response.Headers.SetCookie = "sid=super-secret-cookie; Path=/";
            await ctx.Response.WriteAsJsonAsync(new { ok = true, password = "hunter2", api_key = 12345 });
        }));
        var options = new GatewayHarness.Options { HttpBackend = backend.Address };
        options.Gateway["Gateway:Recording:MaxBodyBytes"] = "1024";
        options.Gateway["Gateway:Recording:Redaction:Headers:0"] = "x-internal-token";
        options.Gateway["Gateway:Recording:Redaction:JsonFields:0"] = "api_key";
        options.Gateway["Gateway:Recording:Redaction:JsonFields:1"] = "password";
        await using var r = await RecordingHarness.StartAsync(null, options);
        await r.StartRecordingAsync("redact");
        using var http = new HttpClient(new SocketsHttpHandler { UseCookies = false }) { BaseAddress = r.H.Http };

        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/login") { Content = JsonContent.Create(new { user = "ann", password = "p@ss \"quoted\"", api_key = "sk-123" }) })
        {
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "sk-live-abc");
            request.Headers.Add("Cookie", "session=xyz");
            request.Headers.Add("x-api-key", "k-1");
            request.Headers.Add("x-internal-token", "t-1");
            (await http.SendAsync(request)).EnsureSuccessStatusCode();
        }

        var big = new string('a', 5000) + "é";
        var bigBody = JsonSerializer.Serialize(new { prompt = big });
        (await http.PostAsync("/v1/login", new StringContent(bigBody, Encoding.UTF8, "application/json"))).EnsureSuccessStatusCode();

        await r.WaitAccountedAsync(2, TimeSpan.FromSeconds(15));
        var records = await r.ReadAsync("redact");
        var login = records[0];
        var raw = RecordingSerializer.Serialize(login);
        foreach (var secret in new[] { "sk-live-abc", "session=xyz", "k-1", "t-1", "super-secret-cookie", "hunter2", "12345", "sk-123", "p@ss" })
        {
            Assert.DoesNotContain(secret, Encoding.UTF8.GetString(raw), StringComparison.Ordinal);
        }

        Assert.Equal(Redaction.Marker, login.Request.Headers.Single(h => h.Name == "Authorization").Value);
        Assert.Equal(Redaction.Marker, login.Response.Headers.Single(h => h.Name == "Set-Cookie").Value);
        Assert.Contains("\"user\":\"ann\"", login.Request.Body!.Text, StringComparison.Ordinal);
        // The hash of a redacted body is of what was recorded: it cannot be used to guess the secret.
        Assert.True(login.Request.Body.Redacted);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(login.Request.Body.Text!))), login.Request.Body.Sha256);
        Assert.Equal(login.Request.Body.Length, Encoding.UTF8.GetByteCount(JsonSerializer.Serialize(new { user = "ann", password = "p@ss \"quoted\"", api_key = "sk-123" })));

        var cut = records[1];
        Assert.True(cut.Request.Body!.Truncated);
        Assert.Equal(Encoding.UTF8.GetByteCount(bigBody), cut.Request.Body.Length);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(bigBody))), cut.Request.Body.Sha256);
        Assert.True(Encoding.UTF8.GetByteCount(cut.Request.Body.Text!) <= 1024);
        Assert.StartsWith("{\"prompt\":\"aaaa", cut.Request.Body.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Grpc_metadata_keys_are_redacted()
    {
        var options = new GatewayHarness.Options();
        options.Gateway["Gateway:Recording:Redaction:GrpcMetadata:0"] = "x-tenant-token";
        await using var r = await RecordingHarness.StartAsync(null, options);
        await r.StartRecordingAsync("grpc-redact");
        using var channel = GrpcChannel.ForAddress(r.H.Grpc);
        await new Generation.GenerationClient(channel).GenerateAsync(new GenerateRequest { Prompt = "x", MaxTokens = 1 }, new Metadata { { "x-tenant-token", "tenant-secret" }, { "x-visible", "fine" } });

        await r.WaitAccountedAsync(1, TimeSpan.FromSeconds(15));
        var record = (await r.ReadAsync("grpc-redact")).Single();
        Assert.Equal(Redaction.Marker, record.Request.Headers.Single(h => h.Name == "x-tenant-token").Value);
        Assert.Equal("fine", record.Request.Headers.Single(h => h.Name == "x-visible").Value);
    }

    [Fact]
    public async Task Sampling_keeps_whole_sessions()
    {
        var options = new GatewayHarness.Options();
        options.Gateway["Gateway:Recording:Sampling:Rate"] = "0";
        options.Gateway["Gateway:Recording:Sampling:Routes:openai"] = "0.5";
        await using var r = await RecordingHarness.StartAsync(null, options);
        await r.StartRecordingAsync("sampled");
        using var http = new HttpClient { BaseAddress = r.H.Http };

        var sessions = Enumerable.Range(0, 40).Select(i => $"user-{i}").ToList();
        for (var turn = 0; turn < 3; turn++)
        {
            foreach (var s in sessions)
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/generate") { Content = JsonContent.Create(new { prompt = "t", max_tokens = 1 }) };
                request.Headers.Add("x-session-id", s);
                (await http.SendAsync(request)).EnsureSuccessStatusCode();
            }
        }

        // gRPC is another route, sampled at the default rate 0: nothing recorded.
        using var channel = GrpcChannel.ForAddress(r.H.Grpc);
        await new Generation.GenerationClient(channel).GenerateAsync(new GenerateRequest { Prompt = "x", MaxTokens = 1 });

        var expected = sessions.Where(s => Gateway.Recording.SessionSampler.Bucket(s) < 0.5).ToList();
        await r.WaitAccountedAsync(expected.Count * 3, TimeSpan.FromSeconds(15));
        var records = await r.ReadAsync("sampled");
        var bySession = records.GroupBy(x => x.SessionId).ToDictionary(g => g.Key, g => g.Count());

        Assert.InRange(bySession.Count, 10, 30); // about half of 40
        Assert.Equal(expected.Order(), bySession.Keys.Order());
        Assert.All(bySession.Values, n => Assert.Equal(3, n)); // whole sessions, never a part
        Assert.DoesNotContain(records, x => x.Protocol == Protocols.Grpc);
    }
}

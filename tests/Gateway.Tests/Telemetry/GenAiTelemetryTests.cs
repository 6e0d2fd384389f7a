using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gateway.Telemetry;
using Grpc.Net.Client;
using Inference.V1;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Trace;
using TestSupport;

namespace Gateway.Tests.Telemetry;

/// <summary>
/// Issue 16, "Metrics that fit the ecosystem": the OpenTelemetry GenAI semantic conventions on the gateway
/// (gen_ai.server.request.duration, gen_ai.server.time_to_first_token, gen_ai.server.time_per_output_token,
/// gen_ai.client.token.usage), recorded for real exchanges through the gateway to ModelSim over HTTP, SSE and gRPC,
/// read in-process with a <see cref="MeterListener"/> (units, attributes, values) and from the admin listener's
/// <c>/metrics</c> scrape (what Prometheus really gets); the server span carries the same attributes.
/// </summary>
public sealed class GenAiTelemetryTests
{
    private const string BackendModel = "meta-llama/Llama-3.1-8B";

    /// <summary>A gateway with one configured model, <c>llama</c> (alias <c>llama-latest</c>), that ModelSim serves as <see cref="BackendModel"/>.</summary>
    private static GatewayHarness.Options Configured(Action<OpenTelemetry.Trace.TracerProviderBuilder>? tracing = null)
    {
        var options = new GatewayHarness.Options { Tracing = tracing };
        options.Sim["Sim:AcceptAnyModel"] = "false";
        options.Sim["Sim:Model"] = BackendModel;
        options.Edit = config => config["Gateway"] = new JsonObject
        {
            ["Models"] = new JsonObject
            {
                ["llama"] = new JsonObject
                {
                    ["Cluster"] = "model-http",
                    ["GrpcCluster"] = "model-grpc",
                    ["Aliases"] = new JsonArray("llama-latest"),
                    ["Rewrite"] = BackendModel,
                },
            },
        };
        return options;
    }

    [Fact]
    public async Task Http_sse_and_grpc_exchanges_record_the_genai_instruments_with_the_backend_usage_in_spec_units()
    {
        await using var h = await GatewayHarness.StartAsync(Configured());
        using var recorder = new GenAiRecorder(h);
        using var http = new HttpClient { BaseAddress = h.Http };

        var plain = await ChatAsync(http, "llama", "one two three four five", maxTokens: 5);
        var sse = await StreamChatAsync(http, "llama-latest", "six seven eight", maxTokens: 8);
        using var channel = GrpcChannel.ForAddress(h.Grpc);
        var grpc = new Generation.GenerationClient(channel);
        var streamed = 0;
        using (var call = grpc.GenerateStream(new GenerateRequest { Prompt = "nine ten", MaxTokens = 6, Model = "llama" }))
        {
            while (await call.ResponseStream.MoveNext(default))
            {
                streamed++;
            }
        }

        var unary = await grpc.GenerateAsync(new GenerateRequest { Prompt = "eleven", MaxTokens = 3, Model = "llama" });
        Assert.Equal(6, streamed);
        Assert.Equal(3, unary.Tokens);

        // 4 LLM exchanges; GET /v1/models is not one.
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/v1/models")).StatusCode);
        await recorder.WaitForAsync("gen_ai.server.request.duration", 4);

        // Units and bucket advice are the convention's.
        Assert.Equal("s", recorder.Units["gen_ai.server.request.duration"]);
        Assert.Equal("s", recorder.Units["gen_ai.server.time_to_first_token"]);
        Assert.Equal("s", recorder.Units["gen_ai.server.time_per_output_token"]);
        Assert.Equal("{token}", recorder.Units["gen_ai.client.token.usage"]);

        // Every measurement names the operation, the provider and the configured model (the alias counts as its model).
        foreach (var m in recorder.All)
        {
            Assert.Equal("openai", m.Tag("gen_ai.provider.name"));
            Assert.Equal("llama", m.Tag("gen_ai.request.model"));
            Assert.Null(m.Tag("error.type"));
        }

        var chat = recorder.Of("gen_ai.server.request.duration").Where(static m => m.Tag("gen_ai.operation.name") == "chat").ToList();
        Assert.Equal(2, chat.Count);
        Assert.All(chat, static m => Assert.Equal(BackendModel, m.Tag("gen_ai.response.model"))); // a configured Rewrite: kept
        Assert.Equal(2, recorder.Of("gen_ai.server.request.duration").Count(static m => m.Tag("gen_ai.operation.name") == "text_completion"));

        // Token usage: exactly what the backend reported (HTTP usage; gRPC GenerateReply.tokens and the stream's chunks).
        Assert.Equal(plain.Prompt + sse.Prompt, recorder.Sum("gen_ai.client.token.usage", "chat", "input"));
        Assert.Equal(plain.Completion + sse.Completion, recorder.Sum("gen_ai.client.token.usage", "chat", "output"));
        Assert.Equal(5 + 8, plain.Completion + sse.Completion);
        Assert.Equal(6 + 3, recorder.Sum("gen_ai.client.token.usage", "text_completion", "output"));
        Assert.Equal(0, recorder.Of("gen_ai.client.token.usage").Count(static m => m.Tag("gen_ai.operation.name") == "text_completion" && m.Tag("gen_ai.token.type") == "input")); // gRPC reports no prompt tokens: none made up

        // Time to first token and per output token: the two streams only (SSE, GenerateStream), never the plain answers
        // (litellm#6334: "emit for streaming only"; a non-streamed answer's first token is its whole duration).
        var ttft = recorder.Of("gen_ai.server.time_to_first_token");
        Assert.Equal(2, ttft.Count);
        var tpot = recorder.Of("gen_ai.server.time_per_output_token");
        Assert.Equal(2, tpot.Count);
        foreach (var op in new[] { "chat", "text_completion" })
        {
            var first = ttft.Single(m => m.Tag("gen_ai.operation.name") == op).Value;
            var perToken = tpot.Single(m => m.Tag("gen_ai.operation.name") == op).Value;
            var total = recorder.Of("gen_ai.server.request.duration").Where(m => m.Tag("gen_ai.operation.name") == op).Max(static m => m.Value);
            Assert.InRange(first, 0, total);
            Assert.InRange(perToken, 0, total);
        }

        // What Prometheus scrapes: the exporter's names, the model labels, the recommended buckets.
        using var admin = new HttpClient { BaseAddress = h.Admin };
        var text = await admin.GetStringAsync("/metrics");
        var samples = PrometheusText.Parse(text);
        var types = PrometheusText.Types(text);
        Assert.Equal("histogram", types.GetValueOrDefault("gen_ai_server_request_duration_seconds"));
        Assert.Equal("histogram", types.GetValueOrDefault("gen_ai_server_time_to_first_token_seconds"));
        Assert.Equal("histogram", types.GetValueOrDefault("gen_ai_server_time_per_output_token_seconds"));
        Assert.Equal("histogram", types.GetValueOrDefault("gen_ai_client_token_usage"));
        Assert.Equal(plain.Prompt + sse.Prompt, samples.Where(static s => s.Name == "gen_ai_client_token_usage_sum" && s["gen_ai_operation_name"] == "chat" && s["gen_ai_token_type"] == "input").Sum(static s => s.Value));
        Assert.Contains(samples, static s => s.Name == "gen_ai_server_request_duration_seconds_bucket" && s["le"] == "81.92");
        Assert.Contains(samples, static s => s.Name == "gen_ai_client_token_usage_bucket" && s["le"] == "67108864");
        Assert.Contains(samples, static s => s.Name == "gen_ai_server_time_to_first_token_seconds_bucket" && s["le"] == "7.5");
        Assert.Contains(samples, static s => s.Name == "gen_ai_server_time_per_output_token_seconds_bucket" && s["le"] == "0.075");

        // Today's gateway_* series are still there, unchanged.
        Assert.Contains(samples, static s => s.Name == "gateway_requests_total" && s["model"] == "llama");
        Assert.Contains(samples, static s => s.Name == "gateway_ttft_seconds_count");
    }

    [Fact]
    public async Task An_unconfigured_model_creates_no_label_value_and_a_refusal_is_an_error_type()
    {
        await using var h = await GatewayHarness.StartAsync(Configured());
        using var recorder = new GenAiRecorder(h);
        using var http = new HttpClient { BaseAddress = h.Http };

        using var unknown = await http.PostAsJsonAsync("/v1/chat/completions", new { model = "gpt-9-made-up", messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 2 });
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        await ChatAsync(http, "llama", "hi", maxTokens: 2);
        await recorder.WaitForAsync("gen_ai.server.request.duration", 2);

        var refused = recorder.Of("gen_ai.server.request.duration").Single(static m => m.Tag("error.type") is not null);
        Assert.Equal("model_not_found", refused.Tag("error.type"));
        Assert.Equal("(other)", refused.Tag("gen_ai.request.model"));
        Assert.Null(refused.Tag("gen_ai.response.model"));
        Assert.DoesNotContain(recorder.Of("gen_ai.client.token.usage"), static m => m.Tag("gen_ai.request.model") == "(other)");

        using var admin = new HttpClient { BaseAddress = h.Admin };
        var text = await admin.GetStringAsync("/metrics");
        Assert.DoesNotContain("gpt-9-made-up", text, StringComparison.Ordinal);
        Assert.Contains(PrometheusText.Parse(text), static s => s.Name == "gen_ai_server_request_duration_seconds_count" && s["error_type"] == "model_not_found" && s["gen_ai_request_model"] == "(other)");
    }

    [Fact]
    public async Task A_response_model_that_is_not_configured_is_other_on_a_gateway_without_models()
    {
        // The harness's default: no Gateway:Models, ModelSim echoes whatever model the request names. A client naming
        // a thousand models must not make a thousand series (the gateway reads no body here: no request model either).
        await using var h = await GatewayHarness.StartAsync();
        using var recorder = new GenAiRecorder(h);
        using var http = new HttpClient { BaseAddress = h.Http };
        for (var i = 0; i < 3; i++)
        {
            await ChatAsync(http, $"client-named-{i}", "hi", maxTokens: 2);
        }

        await recorder.WaitForAsync("gen_ai.server.request.duration", 3);
        Assert.All(recorder.All, static m => Assert.Equal("(other)", m.Tag("gen_ai.response.model")));
        Assert.All(recorder.All, static m => Assert.Equal("(none)", m.Tag("gen_ai.request.model")));
        using var admin = new HttpClient { BaseAddress = h.Admin };
        var text = await admin.GetStringAsync("/metrics");
        Assert.DoesNotContain("client-named-", text, StringComparison.Ordinal);
    }

    /// <summary>
    /// Stranger review of issue 16: gRPC exchanges, and HTTP ones whose body was never read, had no
    /// <c>gen_ai.request.model</c> at all while those that reached a backend named an unconfigured model had
    /// <c>(other)</c>; one rule now for every protocol: a configured name, <c>(other)</c>, or <c>(none)</c> when the
    /// gateway learnt no model name. The span keeps the operation alone as its name then.
    /// </summary>
    [Fact]
    public async Task Every_protocol_carries_gen_ai_request_model_none_when_the_gateway_learnt_no_model()
    {
        await using var h = await GatewayHarness.StartAsync(); // no Gateway:Models: no step reads the model
        using var recorder = new GenAiRecorder(h);
        using var http = new HttpClient { BaseAddress = h.Http };
        await ChatAsync(http, "whatever", "hi", maxTokens: 2);
        using var channel = GrpcChannel.ForAddress(h.Grpc);
        var grpc = new Generation.GenerationClient(channel);
        await grpc.GenerateAsync(new GenerateRequest { Prompt = "eleven", MaxTokens = 2, Model = "whatever" });
        await recorder.WaitForAsync("gen_ai.server.request.duration", 2);

        var durations = recorder.Of("gen_ai.server.request.duration");
        Assert.Equal(2, durations.Count);
        Assert.All(durations, static m => Assert.Equal("(none)", m.Tag("gen_ai.request.model")));
        Assert.All(recorder.All, static m => Assert.NotNull(m.Tag("gen_ai.request.model")));
        using var admin = new HttpClient { BaseAddress = h.Admin };
        var samples = PrometheusText.Parse(await admin.GetStringAsync("/metrics"));
        Assert.Contains(samples, static s => s.Name == "gen_ai_server_request_duration_seconds_count" && s["gen_ai_request_model"] == "(none)");
        Assert.DoesNotContain(samples, static s => s.Name == "gen_ai_server_request_duration_seconds_count" && s["gen_ai_request_model"] is null);
        Assert.Equal("chat", Gateway.Telemetry.GenAi.GenAiTelemetry.SpanName("chat", "(none)"));
    }

    [Fact]
    public async Task With_GenAiMetrics_false_no_genai_series_is_recorded_and_the_gateway_series_remain()
    {
        var options = Configured();
        options.Gateway["Gateway:Telemetry:GenAiMetrics"] = "false";
        await using var h = await GatewayHarness.StartAsync(options);
        using var recorder = new GenAiRecorder(h);
        using var http = new HttpClient { BaseAddress = h.Http };
        await StreamChatAsync(http, "llama", "one two", maxTokens: 3);
        using var admin = new HttpClient { BaseAddress = h.Admin };
        await Eventually.TrueAsync(() => recorder.Gateway("gateway.ttft").Count == 1, TimeSpan.FromSeconds(10), () => "gateway.ttft not recorded");
        Assert.Empty(recorder.All);
        var text = await admin.GetStringAsync("/metrics");
        var samples = PrometheusText.Parse(text);
        Assert.DoesNotContain(samples, static s => s.Name.StartsWith("gen_ai_", StringComparison.Ordinal));
        Assert.Contains(samples, static s => s.Name == "gateway_requests_total");
    }

    [Fact]
    public async Task Time_to_first_token_is_the_first_content_chunk_not_the_response_headers_litellm_25598()
    {
        // litellm#25598: TTFT reported as the whole call, or as the moment the response began, instead of the first
        // non-empty chunk. This backend answers at once with a role-only chunk, then sends content 400 ms later, then
        // 3 more tokens and the usage. TTFT must be >= 400 ms; the response headers went out at once.
        await using var backend = await TestBackend.StartAsync(static app => app.MapPost("/v1/chat/completions", static async (HttpContext context) =>
        {
            context.Response.ContentType = "text/event-stream";
            await Chunk(context, """{"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}""");
            await Task.Delay(400);
            for (var i = 0; i < 4; i++)
            {
                await Chunk(context, """{"model":"m","choices":[{"index":0,"delta":{"content":"tok "}}]}""");
                await Task.Delay(20);
            }

            await Chunk(context, """{"model":"m","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":4,"total_tokens":11}}""");
            await context.Response.WriteAsync("data: [DONE]\n\n");
        }));
        var options = new GatewayHarness.Options { HttpBackend = backend.Address };
        await using var h = await GatewayHarness.StartAsync(options);
        using var recorder = new GenAiRecorder(h);
        using var http = new HttpClient { BaseAddress = h.Http };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = JsonContent.Create(new { model = "m", stream = true, stream_options = new { include_usage = true }, messages = new[] { new { role = "user", content = "hi" } } }),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        await response.Content.ReadAsStringAsync();
        await recorder.WaitForAsync("gen_ai.server.request.duration", 1);

        var ttft = recorder.Of("gen_ai.server.time_to_first_token").Single().Value;
        var total = recorder.Of("gen_ai.server.request.duration").Single().Value;
        Assert.InRange(ttft, 0.39, total);
        var gatewayTtft = recorder.Gateway("gateway.ttft").Single().Value; // the response start: the role chunk, at once
        Assert.True(gatewayTtft < ttft, $"gateway.ttft {gatewayTtft:F3} s (response start) should come before the first token at {ttft:F3} s");
        // (end - first token) / (4 - 1): the decode phase only, about 3 x 20 ms here, far below the 400 ms prefill.
        var tpot = recorder.Of("gen_ai.server.time_per_output_token").Single().Value;
        Assert.InRange(tpot, 0, (total - ttft) / 3 + 1e-9);
        Assert.True(tpot < ttft / 2, $"time per output token {tpot:F3} s should not include the {ttft:F3} s before the first token");
        Assert.Equal(4, recorder.Sum("gen_ai.client.token.usage", "chat", "output"));
        Assert.Equal(7, recorder.Sum("gen_ai.client.token.usage", "chat", "input"));

        static async Task Chunk(HttpContext context, string json)
        {
            await context.Response.WriteAsync($"data: {json}\n\n");
            await context.Response.Body.FlushAsync();
        }
    }

    [Fact]
    public async Task The_server_span_carries_the_genai_attributes_and_name()
    {
        var spans = new List<Activity>();
        await using var h = await GatewayHarness.StartAsync(Configured(tracing: t => t.AddInMemoryExporter(spans)));
        using var http = new HttpClient { BaseAddress = h.Http };
        var answer = await ChatAsync(http, "llama", "one two three", maxTokens: 4);

        var port = h.Http.Port;
        Activity? span = null;
        await Eventually.TrueAsync(() =>
        {
            lock (spans)
            {
                span = spans.LastOrDefault(s => s.Kind == ActivityKind.Server && Equals(s.GetTagItem("server.port"), port) && s.GetTagItem("gen_ai.operation.name") is not null);
            }

            return span is not null;
        }, TimeSpan.FromSeconds(10), () => $"no server span with gen_ai attributes on port {port}; spans: {string.Join(", ", spans.Select(static s => s.DisplayName))}");

        Assert.Equal("chat llama", span!.DisplayName);
        Assert.Equal("chat", span.GetTagItem("gen_ai.operation.name"));
        Assert.Equal("openai", span.GetTagItem("gen_ai.provider.name"));
        Assert.Equal("llama", span.GetTagItem("gen_ai.request.model"));
        Assert.Equal(BackendModel, span.GetTagItem("gen_ai.response.model"));
        Assert.Equal(answer.Prompt, Convert.ToInt64(span.GetTagItem("gen_ai.usage.input_tokens"), System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(answer.Completion, Convert.ToInt64(span.GetTagItem("gen_ai.usage.output_tokens"), System.Globalization.CultureInfo.InvariantCulture));
        Assert.Null(span.GetTagItem("error.type"));
    }

    [Fact]
    public async Task The_provider_name_is_configurable_and_a_bad_one_is_refused_at_start_up_naming_the_key()
    {
        var bad = await Assert.ThrowsAsync<InvalidOperationException>(static () => Gateway.Hosting.GatewayServer.StartAsync(null,
            new Dictionary<string, string?> { ["Gateway:Telemetry:GenAiProviderName"] = "Open AI!", ["Gateway:Listeners:Http:Port"] = "0", ["Gateway:Listeners:Admin:Port"] = "0" }, default));
        Assert.Contains("Gateway:Telemetry:GenAiProviderName", bad.Message, StringComparison.Ordinal);
        Assert.Contains("Open AI!", bad.Message, StringComparison.Ordinal);

        var options = new GatewayHarness.Options();
        options.Gateway["Gateway:Telemetry:GenAiProviderName"] = "azure.ai.openai";
        await using var h = await GatewayHarness.StartAsync(options);
        using var recorder = new GenAiRecorder(h);
        using var http = new HttpClient { BaseAddress = h.Http };
        await ChatAsync(http, "m", "hi", maxTokens: 2);
        await recorder.WaitForAsync("gen_ai.server.request.duration", 1);
        Assert.All(recorder.All, static m => Assert.Equal("azure.ai.openai", m.Tag("gen_ai.provider.name")));
    }

    [Fact]
    public async Task A_grpc_call_failing_with_a_status_is_that_error_type_though_its_http_status_is_200()
    {
        // A gRPC error travels as HTTP 200 with grpc-status in the trailers (or a trailers-only answer): judged by the
        // HTTP status alone it would count as a success, with a time to first token.
        await using var backend = await TestBackend.StartAsync(
            static app => app.MapGrpcService<ExhaustedGeneration>(),
            Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http2,
            static services => services.AddGrpc());
        await using var h = await GatewayHarness.StartAsync(new GatewayHarness.Options { GrpcBackend = backend.Address });
        using var recorder = new GenAiRecorder(h);
        using var channel = GrpcChannel.ForAddress(h.Grpc);
        var client = new Generation.GenerationClient(channel);
        var unary = await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () => await client.GenerateAsync(new GenerateRequest { Prompt = "x", MaxTokens = 1 }));
        Assert.Equal(Grpc.Core.StatusCode.ResourceExhausted, unary.StatusCode);
        using (var call = client.GenerateStream(new GenerateRequest { Prompt = "x", MaxTokens = 4 }))
        {
            var streaming = await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () =>
            {
                while (await call.ResponseStream.MoveNext(default))
                {
                }
            });
            Assert.Equal(Grpc.Core.StatusCode.ResourceExhausted, streaming.StatusCode);
        }

        await recorder.WaitForAsync("gen_ai.server.request.duration", 2);
        Assert.All(recorder.Of("gen_ai.server.request.duration"), static m => Assert.Equal("ResourceExhausted", m.Tag("error.type")));
        Assert.Empty(recorder.Of("gen_ai.server.time_to_first_token")); // a stream that failed after one token is no success
        Assert.Empty(recorder.Of("gen_ai.server.time_per_output_token"));
    }

    [Fact]
    public async Task A_client_that_leaves_mid_stream_is_error_type_499_with_no_time_to_first_token()
    {
        var options = new GatewayHarness.Options();
        options.Sim["Sim:PerTokenMs"] = "50";
        await using var h = await GatewayHarness.StartAsync(options);
        using var recorder = new GenAiRecorder(h);
        using var http = new HttpClient { BaseAddress = h.Http };
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = JsonContent.Create(new { model = "m", stream = true, max_tokens = 200, messages = new[] { new { role = "user", content = "hi" } } }),
        })
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            await using var body = await response.Content.ReadAsStreamAsync();
            var buffer = new byte[256];
            var read = 0;
            while (read < 200)
            {
                read += await body.ReadAsync(buffer);
            }
        } // disposed: the client leaves after a few tokens of 200

        await recorder.WaitForAsync("gen_ai.server.request.duration", 1);
        Assert.Equal("499", recorder.Of("gen_ai.server.request.duration").Single().Tag("error.type"));
        Assert.Empty(recorder.Of("gen_ai.server.time_to_first_token"));
    }

    [Theory]
    [InlineData("POST", "/v1/chat/completions", "Http", "chat")]
    [InlineData("POST", "/openai/deployments/x/chat/completions", "Http", "chat")]
    [InlineData("POST", "/v1/completions", "Sse", "text_completion")]
    [InlineData("POST", "/v1/embeddings", "Http", "embeddings")]
    [InlineData("POST", "/inference.v1.Generation/Generate", "Grpc", "text_completion")]
    [InlineData("POST", "/inference.v1.Generation/GenerateStream", "Grpc", "text_completion")]
    [InlineData("GET", "/v1/models", "Http", null)]
    [InlineData("GET", "/v1/chat/completions", "Http", null)]
    [InlineData("POST", "/v1/generate", "Http", null)]
    [InlineData("POST", "/grpc.health.v1.Health/Check", "Grpc", null)]
    [InlineData("GET", "/v1/stream", "WebSocket", null)]
    [InlineData("CONNECT", "/v1/stream", "WebSocketHttp2", null)]
    public void The_operation_comes_from_the_method_path_and_protocol(string method, string path, string protocol, string? operation) =>
        Assert.Equal(operation, Gateway.Telemetry.GenAi.GenAiOperations.Of(method, new PathString(path), Enum.Parse<Gateway.Exchange.ExchangeProtocol>(protocol)));

    [Fact]
    public async Task With_GenAiStreamUsage_a_stream_whose_client_asked_no_usage_is_counted_and_the_client_still_sees_none()
    {
        var options = Configured();
        options.Gateway["Gateway:Telemetry:GenAiStreamUsage"] = "true";
        await using var h = await GatewayHarness.StartAsync(options);
        using var recorder = new GenAiRecorder(h);
        using var http = new HttpClient { BaseAddress = h.Http };
        string text;
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = JsonContent.Create(new { model = "llama", stream = true, max_tokens = 7, messages = new[] { new { role = "user", content = "one two three" } } }),
        })
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            text = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, text);
        }

        Assert.DoesNotContain("\"usage\"", text, StringComparison.Ordinal); // asked for by the gateway, hidden from the client
        Assert.Contains("[DONE]", text, StringComparison.Ordinal);
        await recorder.WaitForAsync("gen_ai.server.request.duration", 1);
        Assert.Equal(7, recorder.Sum("gen_ai.client.token.usage", "chat", "output"));
        Assert.True(recorder.Sum("gen_ai.client.token.usage", "chat", "input") > 0);
        Assert.Single(recorder.Of("gen_ai.server.time_per_output_token"));

        // Without the setting (the default) the same stream is forwarded as sent and records no token usage.
        await using var plain = await GatewayHarness.StartAsync(Configured());
        using var plainRecorder = new GenAiRecorder(plain);
        using var plainHttp = new HttpClient { BaseAddress = plain.Http };
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = JsonContent.Create(new { model = "llama", stream = true, max_tokens = 7, messages = new[] { new { role = "user", content = "one two three" } } }),
        })
        {
            using var response = await plainHttp.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.True(response.IsSuccessStatusCode);
            await response.Content.ReadAsStringAsync();
        }

        await plainRecorder.WaitForAsync("gen_ai.server.request.duration", 1);
        Assert.Empty(plainRecorder.Of("gen_ai.client.token.usage"));
        Assert.Single(plainRecorder.Of("gen_ai.server.time_to_first_token"));
    }

    [Fact]
    public async Task The_genai_metrics_and_span_go_over_otlp_to_a_collector()
    {
        // A collector on a real h2c listener that takes OTLP/gRPC exports (metrics and traces) and keeps their bytes;
        // the protobuf carries instrument names, attribute keys and span names as UTF-8 strings.
        var exports = new ConcurrentQueue<(string Path, byte[] Body)>();
        await using var collector = await TestBackend.StartAsync(app => app.MapPost("/{**path}", async (HttpContext context) =>
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);
            exports.Enqueue((context.Request.Path.Value ?? "", body.ToArray()));
            context.Response.ContentType = "application/grpc";
            context.Response.AppendTrailer("grpc-status", "0");
            await context.Response.Body.WriteAsync(new byte[5]); // an empty Export*ServiceResponse message
        }), Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http2);

        var options = Configured();
        options.Gateway["Gateway:Telemetry:OtlpEndpoint"] = collector.Address.ToString().TrimEnd('/');
        var h = await GatewayHarness.StartAsync(options);
        try
        {
            using var http = new HttpClient { BaseAddress = h.Http };
            await StreamChatAsync(http, "llama", "one two", maxTokens: 3);
        }
        finally
        {
            await h.DisposeAsync(); // the meter and tracer providers flush on shutdown
        }

        bool Exported(string path, string text) => exports.Any(e => e.Path.EndsWith(path, StringComparison.Ordinal) && Encoding.UTF8.GetString(e.Body).Contains(text, StringComparison.Ordinal));
        await Eventually.TrueAsync(() => Exported("MetricsService/Export", "gen_ai.server.time_to_first_token"), TimeSpan.FromSeconds(15),
            () => $"no OTLP metrics export with the GenAI instruments; exports: {string.Join(", ", exports.Select(static e => $"{e.Path} ({e.Body.Length} bytes)"))}");
        Assert.True(Exported("MetricsService/Export", "gen_ai.client.token.usage"));
        Assert.True(Exported("MetricsService/Export", "gen_ai.request.model"));
        await Eventually.TrueAsync(() => Exported("TraceService/Export", "chat llama"), TimeSpan.FromSeconds(15),
            () => $"no OTLP trace export with the span 'chat llama'; exports: {string.Join(", ", exports.Select(static e => $"{e.Path} ({e.Body.Length} bytes)"))}");
        Assert.True(Exported("TraceService/Export", "gen_ai.usage.output_tokens"));
    }

    [Theory]
    [InlineData("""{"id":"x","model":"llama","choices":[]}""", "llama")]
    [InlineData("""{"choices":[{"model":"nested"}],"model":"top"}""", "top")]
    [InlineData("""{"choices":[{"model":"nested"}]}""", null)]
    [InlineData("""{"model":42}""", null)]
    [InlineData("""{"mo\u0064el":"escaped-name"}""", "escaped-name")]
    [InlineData("""not json""", null)]
    [InlineData("""{"model":"cut""", null)]
    [InlineData("""[{"model":"array"}]""", null)]
    public void The_response_model_is_the_top_level_model_string_only(string json, string? expected) =>
        Assert.Equal(expected, Gateway.Shaping.Tokens.UsageMeter.ReadModel(Encoding.UTF8.GetBytes(json)));

    private static async Task<(long Prompt, long Completion)> ChatAsync(HttpClient http, string model, string content, int maxTokens)
    {
        using var response = await http.PostAsJsonAsync("/v1/chat/completions", new { model, messages = new[] { new { role = "user", content } }, max_tokens = maxTokens });
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        using var json = JsonDocument.Parse(text);
        var usage = json.RootElement.GetProperty("usage");
        return (usage.GetProperty("prompt_tokens").GetInt64(), usage.GetProperty("completion_tokens").GetInt64());
    }

    private static async Task<(long Prompt, long Completion)> StreamChatAsync(HttpClient http, string model, string content, int maxTokens)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = JsonContent.Create(new { model, stream = true, stream_options = new { include_usage = true }, messages = new[] { new { role = "user", content } }, max_tokens = maxTokens }),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith("data: {", StringComparison.Ordinal))
            {
                using var json = JsonDocument.Parse(line["data: ".Length..]);
                if (json.RootElement.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
                {
                    return (usage.GetProperty("prompt_tokens").GetInt64(), usage.GetProperty("completion_tokens").GetInt64());
                }
            }
        }

        Assert.Fail($"The stream carried no usage: {text}");
        return default;
    }

    /// <summary>A gRPC backend whose calls fail with RESOURCE_EXHAUSTED (the stream after one token).</summary>
    private sealed class ExhaustedGeneration : Generation.GenerationBase
    {
        public override Task<GenerateReply> Generate(GenerateRequest request, Grpc.Core.ServerCallContext context) =>
            throw new Grpc.Core.RpcException(new Grpc.Core.Status(Grpc.Core.StatusCode.ResourceExhausted, "no capacity"));

        public override async Task GenerateStream(GenerateRequest request, Grpc.Core.IServerStreamWriter<TokenChunk> responseStream, Grpc.Core.ServerCallContext context)
        {
            await responseStream.WriteAsync(new TokenChunk { Text = "a", Index = 0 });
            throw new Grpc.Core.RpcException(new Grpc.Core.Status(Grpc.Core.StatusCode.ResourceExhausted, "no capacity"));
        }
    }

    /// <summary>One measurement of an instrument, with its tags.</summary>
    internal sealed record Measured(string Instrument, double Value, KeyValuePair<string, object?>[] Tags)
    {
        public string? Tag(string key)
        {
            foreach (var (k, v) in Tags)
            {
                if (k == key)
                {
                    return Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture);
                }
            }

            return null;
        }
    }

    /// <summary>Listens to one gateway's meter (its own name in this process) and keeps every measurement.</summary>
    internal sealed class GenAiRecorder : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly ConcurrentQueue<Measured> _measured = new();

        public GenAiRecorder(GatewayHarness h)
        {
            var meter = h.Gateway.Services.GetRequiredService<GatewayMetrics>().Meter;
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (ReferenceEquals(instrument.Meter, meter) && (instrument.Name.StartsWith("gen_ai.", StringComparison.Ordinal) || instrument.Name == "gateway.ttft"))
                {
                    Units[instrument.Name] = instrument.Unit;
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => _measured.Enqueue(new Measured(i.Name, v, tags.ToArray())));
            _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => _measured.Enqueue(new Measured(i.Name, v, tags.ToArray())));
            _listener.Start();
        }

        public ConcurrentDictionary<string, string?> Units { get; } = new();

        /// <summary>Every GenAI measurement.</summary>
        public List<Measured> All => [.. _measured.Where(static m => m.Instrument.StartsWith("gen_ai.", StringComparison.Ordinal))];

        public List<Measured> Of(string instrument) => [.. _measured.Where(m => m.Instrument == instrument)];

        public List<Measured> Gateway(string instrument) => Of(instrument);

        public long Sum(string instrument, string operation, string tokenType) =>
            (long)Of(instrument).Where(m => m.Tag("gen_ai.operation.name") == operation && m.Tag("gen_ai.token.type") == tokenType).Sum(static m => m.Value);

        public Task WaitForAsync(string instrument, int count) =>
            Eventually.TrueAsync(() => Of(instrument).Count >= count, TimeSpan.FromSeconds(10), () => $"{instrument}: {Of(instrument).Count} of {count} measurements");

        public void Dispose() => _listener.Dispose();
    }
}

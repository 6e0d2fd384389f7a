using System.Net;
using System.Net.WebSockets;
using Grpc.Core;
using Grpc.Net.Client;
using Inference.V1;
using ModelSim.Tests.Support;

namespace ModelSim.Tests.Api;

/// <summary><c>Sim:Model</c> is the one model served: another name is a 404 <c>model_not_found</c> (gRPC NOT_FOUND) on every protocol.</summary>
public sealed class ModelNameTests
{
    [Theory]
    [InlineData("/v1/chat/completions", """{"model":"other-llm","messages":[{"role":"user","content":"hi"}],"max_tokens":2}""")]
    [InlineData("/v1/completions", """{"model":"other-llm","prompt":"hi","max_tokens":2}""")]
    [InlineData("/v1/generate", """{"model":"other-llm","prompt":"hi","max_tokens":2}""")]
    [InlineData("/v1/chat/completions", """{"model":"other-llm","messages":[],"max_tokens":-1}""")] // the model is checked first
    public async Task AnotherModelIs404ModelNotFoundInOpenAiShape(string path, string json)
    {
        await using var sim = await Sims.StartAsync(("PrefillMs", 1), ("PerTokenMs", 1));
        using var client = Sims.Client(sim);
        using var response = await client.PostAsync(path, Sims.RawJson(json));
        var body = System.Text.Json.Nodes.JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("The model `other-llm` does not exist.", (string)body["message"]!);
        Assert.Equal("invalid_request_error", (string)body["type"]!);
        Assert.Equal("model", (string)body["param"]!);
        Assert.Equal("model_not_found", (string)body["code"]!);
        var stats = sim.Stats;
        Assert.Equal((0L, 1L), (stats.Requests, stats.BadRequests)); // never reached the engine
    }

    [Fact]
    public async Task TheServedModelOrNoneIsServedAndListed()
    {
        await using var sim = await Sims.StartAsync(("Model", "served-7b"), ("PrefillMs", 1), ("PerTokenMs", 1));
        using var client = Sims.Client(sim);
        var (named, namedBody) = await Sims.PostAsync(client, "/v1/chat/completions", new { model = "served-7b", messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 2 });
        var (unnamed, unnamedBody) = await Sims.PostAsync(client, "/v1/completions", new { prompt = "hi", max_tokens = 2 });
        var (wrong, _) = await Sims.PostAsync(client, "/v1/completions", new { model = "sim-llm", prompt = "hi", max_tokens = 2 });
        var models = System.Text.Json.Nodes.JsonNode.Parse(await client.GetStringAsync("/v1/models"))!;

        Assert.Equal(200, (int)named.StatusCode);
        Assert.Equal("served-7b", (string)namedBody!["model"]!);
        Assert.Equal(200, (int)unnamed.StatusCode);
        Assert.Equal("served-7b", (string)unnamedBody!["model"]!);
        Assert.Equal(404, (int)wrong.StatusCode); // the default name is not special once another is configured
        Assert.Equal("served-7b", (string)models["data"]![0]!["id"]!);
        Assert.Single(models["data"]!.AsArray());
    }

    [Fact]
    public async Task AcceptAnyModelServesEveryNameAndEchoesIt()
    {
        await using var sim = await Sims.StartAsync(("AcceptAnyModel", true), ("PrefillMs", 1), ("PerTokenMs", 1));
        using var client = Sims.Client(sim);
        var (response, body) = await Sims.PostAsync(client, "/v1/chat/completions", new { model = "anything", messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 2 });
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("anything", (string)body!["model"]!);
    }

    [Fact]
    public async Task GrpcAnotherModelIsNotFoundAndEmptyMeansTheServedOne()
    {
        await using var sim = await Sims.StartAsync(("PrefillMs", 1), ("PerTokenMs", 1));
        using var channel = GrpcChannel.ForAddress(sim.GrpcAddress);
        var client = new Generation.GenerationClient(channel);

        var unary = await Assert.ThrowsAsync<RpcException>(async () => await client.GenerateAsync(new GenerateRequest { Prompt = "p", MaxTokens = 2, Model = "other-llm" }));
        Assert.Equal(StatusCode.NotFound, unary.StatusCode);
        Assert.Equal("The model `other-llm` does not exist.", unary.Status.Detail);
        using var stream = client.GenerateStream(new GenerateRequest { Prompt = "p", MaxTokens = 2, Model = "other-llm" });
        var streamed = await Assert.ThrowsAsync<RpcException>(async () => await stream.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(StatusCode.NotFound, streamed.StatusCode);

        Assert.Equal(2, (await client.GenerateAsync(new GenerateRequest { Prompt = "p", MaxTokens = 2 })).Tokens);
        Assert.Equal(2, (await client.GenerateAsync(new GenerateRequest { Prompt = "p", MaxTokens = 2, Model = "sim-llm" })).Tokens);
    }

    [Fact]
    public async Task WebSocketUpgradeForAnotherModelIs404AndAMessageForOneIsAnErrorFrame()
    {
        await using var sim = await Sims.StartAsync(("PrefillMs", 1), ("PerTokenMs", 1));

        using var refused = new ClientWebSocket();
        refused.Options.CollectHttpResponseDetails = true;
        await Assert.ThrowsAsync<WebSocketException>(() => refused.ConnectAsync(new Uri(sim.WebSocketAddress + "?model=other-llm"), CancellationToken.None));
        Assert.Equal(HttpStatusCode.NotFound, refused.HttpStatusCode);

        using var named = new ClientWebSocket();
        await named.ConnectAsync(new Uri(sim.WebSocketAddress + "?model=sim-llm"), CancellationToken.None);
        Assert.Equal(WebSocketState.Open, named.State);

        await using var ws = await WebSocketClient.ConnectAsync(sim);
        await ws.SendAsync(new { prompt = "hi", max_tokens = 2, model = "other-llm" });
        var error = await ws.ReceiveAsync();
        Assert.Equal("model_not_found", (string)error!["code"]!);
        Assert.Equal("The model `other-llm` does not exist.", (string)error["error"]!);
        var (tokens, done) = await ws.RequestAsync(new { prompt = "hi", max_tokens = 2, model = "sim-llm" }); // still usable
        Assert.Equal(2, tokens.Count);
        Assert.True((bool)done["done"]!);
    }
}

using System.Text;
using System.Text.Json;
using Contracts.Tokens;
using Inference.V1;
using Replay.Clients;

namespace Replay.Sources;

/// <summary>
/// The request of <c>replay load</c> without a template: an OpenAI chat completion of <c>--prompt-tokens</c> prompt
/// tokens asking for <c>--max-tokens</c> output tokens (<c>--stream</c> for SSE), or its gRPC
/// (<c>inference.v1.Generation/Generate(Stream)</c>) or WebSocket (<c>/v1/stream</c> turn) equivalent.
/// </summary>
internal static class SyntheticSource
{
    /// <summary>The one-request workload (drawn again for every arrival).</summary>
    public static Workload Create(SourceSettings s)
    {
        var request = s.Protocol switch
        {
            "grpc" => new PlannedRequest
            {
                Protocol = RequestProtocol.Grpc,
                PathAndQuery = s.Stream ? "/inference.v1.Generation/GenerateStream" : "/inference.v1.Generation/Generate",
                Headers = [new("content-type", "application/grpc")],
                Body = GrpcFraming.Frame(new GenerateRequest { Prompt = TokenCounter.BuildPrompt(s.PromptTokens), MaxTokens = s.MaxTokens }),
                Streamed = s.Stream,
                Route = s.Stream ? "gRPC GenerateStream" : "gRPC Generate",
            },
            "websocket" => new PlannedRequest
            {
                Protocol = RequestProtocol.WebSocket,
                Method = "GET",
                PathAndQuery = "/v1/stream",
                Streamed = true,
                Route = "WS /v1/stream",
                Turns = [new WebSocketTurn(WebSocketMessage(TokenCounter.BuildPrompt(s.PromptTokens), s.MaxTokens), false, 0)],
            },
            _ => new PlannedRequest
            {
                Protocol = RequestProtocol.Http,
                PathAndQuery = s.Path,
                Headers = [new("content-type", "application/json")],
                Prompt = new SyntheticPrompt(s.PromptTokens, s.MaxTokens, s.Model, s.Stream) { Text = s.PromptText },
                Streamed = s.Stream,
                Route = $"POST {s.Path}",
            },
        };

        var prefixes = s.PromptText is { Groups: > 0 } t ? $" after one of {t.Groups} shared {t.PrefixTokens}-token prefixes" : string.Empty;
        if (s.Conversation is { } conversation)
        {
            // "generated" only when a generator model writes the user turns (--generate-with); the prefix groups are
            // named as for single requests (stranger review, issue 14: the --turns line said "generated" and hid them).
            return new Workload(
                $"{(conversation.Generated ? "generated" : "synthetic")} conversations ({conversation.Turns} turns{prefixes}, max_tokens {s.MaxTokens}{(s.Stream ? ", streamed" : string.Empty)})",
                [new PlannedSession { Id = "conversation", OriginalId = "conversation", Requests = [request with { Route = "conversation" }], Conversation = conversation }],
                [],
                0);
        }

        var session = new PlannedSession { Id = "load", OriginalId = "load", Requests = [request] };
        return new Workload($"synthetic {s.Protocol} requests ({s.PromptTokens} prompt tokens{prefixes}, max_tokens {s.MaxTokens}{(s.Stream ? ", streamed" : string.Empty)})", [session], [], 0);
    }

    /// <summary>The simulator's WebSocket request message <c>{"prompt","max_tokens"}</c>.</summary>
    public static byte[] WebSocketMessage(string prompt, int maxTokens)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteString("prompt", prompt);
            json.WriteNumber("max_tokens", maxTokens);
            json.WriteEndObject();
        }

        return stream.ToArray();
    }

    /// <summary>UTF-8 bytes of a string.</summary>
    public static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);
}

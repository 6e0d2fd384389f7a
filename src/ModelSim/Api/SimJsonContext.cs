using System.Text.Json;
using System.Text.Json.Serialization;

namespace ModelSim.Api;

// Wire shapes of the HTTP and WebSocket APIs. Requests bind only what the simulator uses; unknown fields (temperature,
// top_p, user, …) are ignored, as vLLM ignores what it does not support. Responses follow vLLM's OpenAI-compatible
// server field for field (snake_case, explicit nulls).

/// <summary><c>POST /v1/generate</c> body.</summary>
internal sealed record GenerateBody
{
    public string? Model { get; init; }
    public string? Prompt { get; init; }
    public int? MaxTokens { get; init; }
    public string? SessionId { get; init; }
}

/// <summary><c>POST /v1/chat/completions</c> body (the fields the simulator reads).</summary>
internal sealed record ChatCompletionBody
{
    public string? Model { get; init; }
    public List<ChatMessageBody?>? Messages { get; init; }
    public int? MaxTokens { get; init; }
    public int? MaxCompletionTokens { get; init; }
    public bool? Stream { get; init; }
    public StreamOptionsBody? StreamOptions { get; init; }
}

/// <summary>A chat message; <c>content</c> is a string, an array of content parts or null.</summary>
internal sealed record ChatMessageBody
{
    public string? Role { get; init; }
    public JsonElement Content { get; init; }
}

/// <summary><c>POST /v1/completions</c> body; <c>prompt</c> is a string, a one-string array or an array of token ids.</summary>
internal sealed record CompletionBody
{
    public string? Model { get; init; }
    public JsonElement Prompt { get; init; }
    public int? MaxTokens { get; init; }
    public int? MaxCompletionTokens { get; init; }
    public bool? Stream { get; init; }
    public StreamOptionsBody? StreamOptions { get; init; }
}

/// <summary><c>stream_options</c>.</summary>
internal sealed record StreamOptionsBody
{
    public bool? IncludeUsage { get; init; }
}

/// <summary>A WebSocket request message.</summary>
internal sealed record WebSocketRequestBody
{
    public string? Model { get; init; }
    public string? Prompt { get; init; }
    public int? MaxTokens { get; init; }
    public string? SessionId { get; init; }
}

internal sealed record GenerateResponse(string Text, int Tokens, int PromptTokens, string FinishReason);

internal sealed record UsageBody(int PromptTokens, int TotalTokens, int CompletionTokens);

internal sealed record ChatMessageOut(string Role, string Content);

internal sealed record ChatChoiceOut(int Index, ChatMessageOut Message, JsonElement? Logprobs, string FinishReason, JsonElement? StopReason);

internal sealed record ChatCompletionResponse(string Id, string Object, long Created, string Model, ChatChoiceOut[] Choices, UsageBody Usage);

internal sealed record CompletionChoiceOut(int Index, string Text, JsonElement? Logprobs, string FinishReason, JsonElement? StopReason);

internal sealed record CompletionResponse(string Id, string Object, long Created, string Model, CompletionChoiceOut[] Choices, UsageBody Usage);

internal sealed record ModelCard(string Id, string Object, long Created, string OwnedBy, string Root, int MaxModelLen);

internal sealed record ModelList(string Object, ModelCard[] Data);

/// <summary>OpenAI's error shape: <c>{"error":{"message","type","param","code"}}</c>.</summary>
internal sealed record ErrorResponse(ErrorBody Error);

internal sealed record ErrorBody(string Message, string Type, string? Param, string Code);

internal sealed record WebSocketError(string Error, string Code);

internal sealed record WebSocketDone(bool Done, int Tokens, int PromptTokens, string FinishReason);

internal sealed record StallResponse(double StallMs, long Stalls);

internal sealed record CollapseResponse(double CollapseMs, long Collapses);

internal sealed record HealthResponse(string Status);

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    NumberHandling = JsonNumberHandling.Strict,
    AllowTrailingCommas = false,
    ReadCommentHandling = JsonCommentHandling.Disallow)]
[JsonSerializable(typeof(GenerateBody))]
[JsonSerializable(typeof(ChatCompletionBody))]
[JsonSerializable(typeof(CompletionBody))]
[JsonSerializable(typeof(WebSocketRequestBody))]
[JsonSerializable(typeof(GenerateResponse))]
[JsonSerializable(typeof(ChatCompletionResponse))]
[JsonSerializable(typeof(CompletionResponse))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(WebSocketError))]
[JsonSerializable(typeof(WebSocketDone))]
[JsonSerializable(typeof(StallResponse))]
[JsonSerializable(typeof(CollapseResponse))]
[JsonSerializable(typeof(HealthResponse))]
internal sealed partial class SimJsonContext : JsonSerializerContext;

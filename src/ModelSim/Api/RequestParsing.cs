using System.Text.Json;
using Contracts.Tokens;
using ModelSim.Engine;

namespace ModelSim.Api;

/// <summary>
/// Turns request bodies into <see cref="GenerationRequest"/>s: counts prompt tokens with
/// <see cref="TokenCounter.Default"/>, hashes the prompt for the text key, and checks <c>max_tokens</c>. Every check
/// failure is an <see cref="ApiError"/> naming the field, never an exception.
/// </summary>
internal static class RequestParsing
{
    /// <summary>
    /// Resolves the output length: <c>max_completion_tokens</c> (newer OpenAI clients), else <c>max_tokens</c>, else
    /// <c>Sim:DefaultMaxTokens</c> unless <paramref name="required"/>. Must be 1 to <c>Sim:MaxTokensLimit</c>.
    /// </summary>
    public static bool TryResolveMaxTokens(int? maxTokens, int? maxCompletionTokens, SimOptions options, bool required, out int value, out ApiError error)
    {
        var param = maxCompletionTokens.HasValue ? "max_completion_tokens" : "max_tokens";
        var requested = maxCompletionTokens ?? maxTokens;
        error = default;
        value = 0;
        if (requested is null)
        {
            if (required)
            {
                error = ApiError.BadRequest("max_tokens is required.", "missing_max_tokens", "max_tokens");
                return false;
            }

            value = options.DefaultMaxTokens;
            return true;
        }

        if (requested < 1)
        {
            error = ApiError.BadRequest($"{param} must be at least 1 (was {requested}).", "invalid_max_tokens", param);
            return false;
        }

        if (requested > options.MaxTokensLimit)
        {
            error = ApiError.BadRequest($"{param} must be at most {options.MaxTokensLimit} (was {requested}).", "invalid_max_tokens", param);
            return false;
        }

        value = requested.Value;
        return true;
    }

    /// <summary>Measures a plain prompt.</summary>
    public static void MeasurePrompt(string prompt, out int tokens, out ulong hash)
    {
        tokens = TokenCounter.Default.Count(prompt);
        hash = TextGenerator.HashPrompt(prompt);
    }

    /// <summary>
    /// Measures chat messages: prompt tokens are the sum of the messages' text tokens (string content or the
    /// <c>text</c> of content parts; other parts such as images are ignored); the hash covers roles and texts.
    /// </summary>
    public static bool TryMeasureChat(List<ChatMessageBody?>? messages, out int tokens, out ulong hash, out ApiError error)
    {
        tokens = 0;
        hash = TextGenerator.FnvOffset;
        error = default;
        if (messages is null || messages.Count == 0)
        {
            error = ApiError.BadRequest("messages must be a non-empty array.", "invalid_messages", "messages");
            return false;
        }

        for (var i = 0; i < messages.Count; i++)
        {
            var message = messages[i];
            if (message is null)
            {
                error = ApiError.BadRequest($"messages[{i}] must be an object.", "invalid_messages", "messages");
                return false;
            }

            hash = TextGenerator.HashPrompt(message.Role ?? string.Empty, hash);
            hash = TextGenerator.HashPrompt("\n", hash);
            var content = message.Content;
            switch (content.ValueKind)
            {
                case JsonValueKind.String:
                    if (!TryAddText(content, ref tokens, ref hash))
                    {
                        error = NotText($"messages[{i}].content", "messages");
                        return false;
                    }

                    break;
                case JsonValueKind.Array:
                    foreach (var part in content.EnumerateArray())
                    {
                        if (part.ValueKind == JsonValueKind.Object
                            && part.TryGetProperty("text", out var text)
                            && text.ValueKind == JsonValueKind.String
                            && !TryAddText(text, ref tokens, ref hash))
                        {
                            error = NotText($"messages[{i}].content[].text", "messages");
                            return false;
                        }
                    }

                    break;
                case JsonValueKind.Null or JsonValueKind.Undefined:
                    break;
                default:
                    error = ApiError.BadRequest($"messages[{i}].content must be a string, an array of content parts or null.", "invalid_messages", "messages");
                    return false;
            }
        }

        return true;
    }

    /// <summary>Measures a completions prompt: a string, a one-string array, or an array of token ids (each id one token).</summary>
    public static bool TryMeasureCompletionPrompt(JsonElement prompt, out int tokens, out ulong hash, out ApiError error)
    {
        tokens = 0;
        hash = TextGenerator.FnvOffset;
        error = default;
        switch (prompt.ValueKind)
        {
            case JsonValueKind.String:
                if (!TryAddText(prompt, ref tokens, ref hash))
                {
                    error = NotText("prompt", "prompt");
                    return false;
                }

                return true;
            case JsonValueKind.Array when prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.String:
                if (!TryAddText(prompt[0], ref tokens, ref hash))
                {
                    error = NotText("prompt[0]", "prompt");
                    return false;
                }

                return true;
            case JsonValueKind.Array:
                foreach (var id in prompt.EnumerateArray())
                {
                    if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out var value) || value < 0)
                    {
                        error = ApiError.BadRequest("prompt must be a string, an array of one string, or an array of token ids (one prompt per request).", "invalid_prompt", "prompt");
                        return false;
                    }

                    tokens++;
                    hash = (hash ^ (uint)value) * 1099511628211UL;
                }

                return true;
            case JsonValueKind.Undefined or JsonValueKind.Null:
                error = ApiError.BadRequest("prompt is required.", "missing_prompt", "prompt");
                return false;
            default:
                error = ApiError.BadRequest("prompt must be a string, an array of one string, or an array of token ids.", "invalid_prompt", "prompt");
                return false;
        }
    }

    private static void AddText(string text, ref int tokens, ref ulong hash)
    {
        tokens += TokenCounter.Default.Count(text);
        hash = TextGenerator.HashPrompt(text, hash);
    }

    /// <summary>
    /// Adds a JSON string's text; false when it cannot be decoded: bytes that are not UTF-8, or a lone surrogate escape
    /// such as <c>"\ud800"</c> (both parse as JSON; System.Text.Json throws <see cref="InvalidOperationException"/> when
    /// such a string is read).
    /// </summary>
    private static bool TryAddText(JsonElement element, ref int tokens, ref ulong hash)
    {
        string text;
        try
        {
            text = element.GetString()!;
        }
        catch (InvalidOperationException)
        {
            return false;
        }

        AddText(text, ref tokens, ref hash);
        return true;
    }

    private static ApiError NotText(string where, string param) => ApiError.BadRequest(
        $"The request body is not valid: {where} is not text (bytes that are not UTF-8, or a lone surrogate escape such as \\ud800).", "invalid_json", param);
}

using System.Text.Json;
using Contracts.Tokens;
using ModelSim.Engine;

namespace ModelSim.Api;

/// <summary>
/// Turns request bodies into <see cref="GenerationRequest"/>s: counts prompt tokens with
/// <see cref="TokenCounter.Default"/> (and, with the prefix cache on, hashes their ids into KV blocks), hashes the
/// prompt for the text key, and checks <c>max_tokens</c> and <c>model</c>. Every check failure is an
/// <see cref="ApiError"/> naming the field, never an exception.
/// </summary>
internal static class RequestParsing
{
    /// <summary>Tokens per KV block to hash prompts into, or 0 when the prefix cache is off (prompts are only counted).</summary>
    public static int BlockTokens(SimOptions options) => options.PrefixCache is { Enabled: true } cache ? cache.BlockTokens : 0;

    /// <summary>
    /// Checks the model a request names: none (null or empty) means the served one; another name is a 404
    /// <c>model_not_found</c> unless <c>Sim:AcceptAnyModel</c>.
    /// </summary>
    /// <param name="requested">The request's model, if any.</param>
    /// <param name="options">The served model and <c>AcceptAnyModel</c>.</param>
    /// <param name="model">The name to echo: the requested one, or the served one when none was named.</param>
    /// <param name="error">The 404 when the result is false.</param>
    public static bool TryResolveModel(string? requested, SimOptions options, out string model, out ApiError error)
    {
        error = default;
        if (string.IsNullOrEmpty(requested))
        {
            model = options.Model;
            return true;
        }

        model = requested;
        if (options.AcceptAnyModel || string.Equals(requested, options.Model, StringComparison.Ordinal))
        {
            return true;
        }

        error = ApiError.ModelNotFound(requested);
        return false;
    }

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
    /// <param name="prompt">The prompt text.</param>
    /// <param name="blockTokens">From <see cref="BlockTokens"/>.</param>
    public static PromptMeasure MeasurePrompt(string prompt, int blockTokens)
    {
        var measure = new PromptMeasure(blockTokens);
        measure.AddText(prompt, tag: 0);
        return measure;
    }

    /// <summary>
    /// Measures chat messages: prompt tokens are the sum of the messages' text tokens (string content or the
    /// <c>text</c> of content parts; other parts such as images are ignored); the hash covers roles and texts.
    /// </summary>
    /// <remarks>
    /// For the prefix cache the messages are the prompt in order, each token tagged with its message's role and
    /// position (<see cref="PrefixHasher.ChatTag"/>): a simple chat template, so that a conversation's later turns share
    /// the earlier turns' blocks. Token counts are unchanged by it.
    /// </remarks>
    public static bool TryMeasureChat(List<ChatMessageBody?>? messages, int blockTokens, out PromptMeasure measure, out ApiError error)
    {
        measure = new PromptMeasure(blockTokens);
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

            measure.AddUncounted(message.Role ?? string.Empty);
            measure.AddUncounted("\n");
            var tag = PrefixHasher.ChatTag(message.Role, i);
            var content = message.Content;
            switch (content.ValueKind)
            {
                case JsonValueKind.String:
                    if (!TryAddText(content, ref measure, tag))
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
                            && !TryAddText(text, ref measure, tag))
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
    public static bool TryMeasureCompletionPrompt(JsonElement prompt, int blockTokens, out PromptMeasure measure, out ApiError error)
    {
        measure = new PromptMeasure(blockTokens);
        error = default;
        switch (prompt.ValueKind)
        {
            case JsonValueKind.String:
                if (!TryAddText(prompt, ref measure, tag: 0))
                {
                    error = NotText("prompt", "prompt");
                    return false;
                }

                return true;
            case JsonValueKind.Array when prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.String:
                if (!TryAddText(prompt[0], ref measure, tag: 0))
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

                    measure.AddTokenId(value);
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

    /// <summary>
    /// Adds a JSON string's text; false when it cannot be decoded: bytes that are not UTF-8, or a lone surrogate escape
    /// such as <c>"\ud800"</c> (both parse as JSON; System.Text.Json throws <see cref="InvalidOperationException"/> when
    /// such a string is read).
    /// </summary>
    private static bool TryAddText(JsonElement element, ref PromptMeasure measure, ulong tag)
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

        measure.AddText(text, tag);
        return true;
    }

    private static ApiError NotText(string where, string param) => ApiError.BadRequest(
        $"The request body is not valid: {where} is not text (bytes that are not UTF-8, or a lone surrogate escape such as \\ud800).", "invalid_json", param);
}

/// <summary>
/// A prompt being measured: its token count, the FNV-1a hash of its text (the key of the output text) and, with the
/// prefix cache on, the chain hashes of its full KV blocks over the tokenizer's real token ids.
/// </summary>
internal struct PromptMeasure
{
    /// <summary>Id lists longer than this are not kept for reuse by the thread (a huge prompt's list is dropped).</summary>
    private const int MaxRetainedIds = 1 << 16;

    [ThreadStatic]
    private static List<int>? t_ids;

    private readonly bool _hashing;
    private PrefixHasher _blocks;

    /// <param name="blockTokens">Tokens per KV block, or 0 to only count.</param>
    public PromptMeasure(int blockTokens)
    {
        _hashing = blockTokens > 0;
        _blocks = _hashing ? new PrefixHasher(blockTokens) : default;
    }

    /// <summary>Prompt tokens (cl100k).</summary>
    public int Tokens { get; private set; }

    /// <summary>FNV-1a hash of the prompt's text (<see cref="TextGenerator.HashPrompt"/>).</summary>
    public ulong TextHash { get; private set; } = TextGenerator.FnvOffset;

    /// <summary>The full blocks' chain hashes, or null when the prefix cache is off.</summary>
    public readonly ulong[]? BlockHashes => _hashing ? _blocks.ToArray() : null;

    /// <summary>Adds text that is part of the prompt, its tokens tagged with <paramref name="tag"/>.</summary>
    public void AddText(string text, ulong tag)
    {
        if (_hashing)
        {
            var ids = t_ids ?? new List<int>(256);
            t_ids = null;
            ids.Clear();
            Tokens += TokenCounter.Default.Encode(text, ids);
            _blocks.Add(ids, tag);
            if (ids.Capacity <= MaxRetainedIds)
            {
                ids.Clear();
                t_ids = ids;
            }
        }
        else
        {
            Tokens += TokenCounter.Default.Count(text);
        }

        TextHash = TextGenerator.HashPrompt(text, TextHash);
    }

    /// <summary>Adds text to the text hash only (a chat message's role): not counted, not cached.</summary>
    public void AddUncounted(string text) => TextHash = TextGenerator.HashPrompt(text, TextHash);

    /// <summary>Adds one token given by id (a completions prompt of token ids).</summary>
    public void AddTokenId(int id)
    {
        Tokens++;
        TextHash = (TextHash ^ (uint)id) * 1099511628211UL;
        if (_hashing)
        {
            _blocks.Add(id, tag: 0);
        }
    }

    /// <summary>The engine's request for this prompt.</summary>
    public readonly GenerationRequest ToRequest(int maxTokens, int seed) =>
        new(Tokens, maxTokens, TextGenerator.TextKey(seed, TextHash), BlockHashes);
}

using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Contracts.Tokens;
using Google.Protobuf;
using Inference.V1;

namespace Gateway.Shaping.Tokens;

/// <summary>
/// What a token-aware limit needs to know of an LLM request before it is forwarded: the prompt's size in tokens
/// (counted with the shared cl100k tokenizer) and the most output tokens it may produce. Read from an OpenAI-style
/// JSON body (<c>messages[].content</c>, <c>prompt</c>, <c>max_tokens</c> / <c>max_completion_tokens</c>, <c>stream</c>,
/// <c>stream_options.include_usage</c>) or from an <c>inference.v1</c> gRPC request (fields 1 and 2).
/// </summary>
internal sealed record LlmRequest(int PromptTokens, int MaxTokens, bool Stream, bool IncludeUsage, bool Valid)
{
    /// <summary>The model the request names (JSON <c>model</c>, gRPC <c>GenerateRequest.model</c>), or null when it names none.</summary>
    public string? Model { get; private init; }

    /// <summary>Tokens charged up front: the prompt plus every output token the request may produce.</summary>
    public long Estimate => (long)PromptTokens + MaxTokens;

    /// <summary>
    /// True when the body is JSON whose text cannot be decoded: bytes that are not UTF-8, or a string with a lone surrogate
    /// escape (<c>"\ud800"</c>). Its prompt cannot be counted nor the body rewritten; the gateway answers 400.
    /// </summary>
    public bool Undecodable { get; private init; }

    /// <summary>
    /// Parses an OpenAI-style JSON body; <see cref="Valid"/> is false (and the estimate is <paramref name="defaultMaxTokens"/>)
    /// when it is not JSON, and <see cref="Undecodable"/> true as well when its text cannot be decoded.
    /// </summary>
    public static LlmRequest FromJson(ReadOnlySpan<byte> json, int defaultMaxTokens)
    {
        if (json.IsEmpty)
        {
            return new LlmRequest(0, defaultMaxTokens, false, false, false);
        }

        if (!IsDecodable(json))
        {
            return new LlmRequest(0, defaultMaxTokens, false, false, false) { Undecodable = true };
        }

        try
        {
            using var doc = JsonDocument.Parse(json.ToArray());
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return new LlmRequest(0, defaultMaxTokens, false, false, false);
            }

            var text = new StringBuilder();
            if (root.TryGetProperty("messages", out var messages) && messages.ValueKind == JsonValueKind.Array)
            {
                foreach (var m in messages.EnumerateArray())
                {
                    if (m.ValueKind == JsonValueKind.Object && m.TryGetProperty("content", out var content))
                    {
                        AppendContent(content, text);
                    }
                }
            }

            if (root.TryGetProperty("prompt", out var prompt))
            {
                AppendContent(prompt, text);
            }

            var max = Int(root, "max_tokens") ?? Int(root, "max_completion_tokens") ?? defaultMaxTokens;
            var stream = root.TryGetProperty("stream", out var s) && s.ValueKind == JsonValueKind.True;
            var includeUsage = root.TryGetProperty("stream_options", out var so) && so.ValueKind == JsonValueKind.Object
                && so.TryGetProperty("include_usage", out var iu) && iu.ValueKind == JsonValueKind.True;
            // An empty "model" names no model, as an empty gRPC field, ?model= or x-model do (stranger review, issue 14:
            // HTTP "" was 404 model_not_found while the other protocols went to the route's cluster).
            var model = root.TryGetProperty("model", out var named) && named.ValueKind == JsonValueKind.String && named.GetString() is { Length: > 0 } modelName ? modelName : null;
            return new LlmRequest(TokenCounter.Default.Count(text.ToString()), Math.Max(0, max), stream, includeUsage, true) { Model = model };
        }
        catch (JsonException)
        {
            return new LlmRequest(0, defaultMaxTokens, false, false, false);
        }
    }

    /// <summary>Parses the first message of a gRPC <c>inference.v1</c> request body (5-byte prefix + GenerateRequest).</summary>
    public static LlmRequest FromGrpc(ReadOnlySpan<byte> body, int defaultMaxTokens)
    {
        if (body.Length < 5 || body[0] != 0)
        {
            return new LlmRequest(0, defaultMaxTokens, false, false, false);
        }

        var length = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(body[1..]);
        if (length > body.Length - 5)
        {
            return new LlmRequest(0, defaultMaxTokens, false, false, false);
        }

        try
        {
            var request = GenerateRequest.Parser.ParseFrom(body.Slice(5, length));
            return new LlmRequest(TokenCounter.Default.Count(request.Prompt), request.MaxTokens > 0 ? request.MaxTokens : defaultMaxTokens, false, false, true)
            {
                Model = request.Model.Length > 0 ? request.Model : null,
            };
        }
        catch (Google.Protobuf.InvalidProtocolBufferException)
        {
            return new LlmRequest(0, defaultMaxTokens, false, false, false);
        }
    }

    /// <summary>
    /// The body with <c>stream_options.include_usage</c> set to true, so that the backend reports the usage of a stream
    /// (vLLM and OpenAI send it as a last chunk with empty <c>choices</c>).
    /// </summary>
    /// <remarks>
    /// Written with <see cref="Utf8JsonWriter"/> from a <see cref="JsonDocument"/>, which accepts a repeated property
    /// name: each top-level name is written once with its last value (JSON parsers such as Python's, which vLLM uses,
    /// keep the last), so a body like <c>{"stream":false, …, "stream":true}</c> is forwarded as the backend would read it.
    /// </remarks>
    public static byte[] WithIncludeUsage(ReadOnlySpan<byte> json)
    {
        using var document = JsonDocument.Parse(json.ToArray());
        var root = document.RootElement;
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(json.Length + 48);
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            foreach (var (name, value) in LastOfEach(root))
            {
                if (name == "stream_options")
                {
                    continue;
                }

                writer.WritePropertyName(name);
                value.WriteTo(writer);
            }

            writer.WriteStartObject("stream_options");
            if (LastOfEach(root).FirstOrDefault(static p => p.Name == "stream_options").Value is { ValueKind: JsonValueKind.Object } options)
            {
                foreach (var (name, value) in LastOfEach(options))
                {
                    if (name != "include_usage")
                    {
                        writer.WritePropertyName(name);
                        value.WriteTo(writer);
                    }
                }
            }

            writer.WriteBoolean("include_usage", true);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// The body with its top-level <c>model</c> set to <paramref name="model"/> (the name a backend serves a model
    /// under); every other property is written once with its last value, as <see cref="WithIncludeUsage"/> does.
    /// </summary>
    public static byte[] WithModel(ReadOnlySpan<byte> json, string model)
    {
        using var document = JsonDocument.Parse(json.ToArray());
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(json.Length + model.Length);
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            var written = false;
            foreach (var (name, value) in LastOfEach(document.RootElement))
            {
                if (name == "model")
                {
                    writer.WriteString("model", model);
                    written = true;
                    continue;
                }

                writer.WritePropertyName(name);
                value.WriteTo(writer);
            }

            if (!written)
            {
                writer.WriteString("model", model);
            }

            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>A gRPC request body (5-byte prefix + <c>GenerateRequest</c>) with its <c>model</c> set to <paramref name="model"/>; null when it does not parse.</summary>
    public static byte[]? GrpcWithModel(ReadOnlySpan<byte> body, string model)
    {
        if (body.Length < 5 || body[0] != 0)
        {
            return null;
        }

        var length = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(body[1..]);
        if (length != body.Length - 5)
        {
            return null; // one message per unary call; anything else is forwarded as sent
        }

        try
        {
            var request = GenerateRequest.Parser.ParseFrom(body.Slice(5, length));
            request.Model = model;
            var size = request.CalculateSize();
            var framed = new byte[5 + size];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(framed.AsSpan(1), (uint)size);
            request.WriteTo(framed.AsSpan(5));
            return framed;
        }
        catch (Google.Protobuf.InvalidProtocolBufferException)
        {
            return null;
        }
    }

    /// <summary>An object's properties, each name once with its last value, in the order of those last values.</summary>
    private static List<(string Name, JsonElement Value)> LastOfEach(JsonElement obj)
    {
        var last = new Dictionary<string, int>(StringComparer.Ordinal);
        var all = new List<(string Name, JsonElement Value)>();
        foreach (var p in obj.EnumerateObject())
        {
            last[p.Name] = all.Count;
            all.Add((p.Name, p.Value));
        }

        var result = new List<(string Name, JsonElement Value)>(last.Count);
        for (var i = 0; i < all.Count; i++)
        {
            if (last[all[i].Name] == i)
            {
                result.Add(all[i]);
            }
        }

        return result;
    }

    /// <summary>
    /// Whether every string of a JSON text decodes: the bytes are UTF-8, and no escaped string holds a lone surrogate
    /// (System.Text.Json parses both, then throws <see cref="InvalidOperationException"/> when a string is read, and
    /// <see cref="JsonNode"/> writes U+FFFD for bytes that are not UTF-8). Only escaped strings are decoded, into a
    /// pooled buffer; a text that is not JSON counts as decodable (the parser reports it).
    /// </summary>
    private static bool IsDecodable(ReadOnlySpan<byte> json)
    {
        if (!System.Text.Unicode.Utf8.IsValid(json))
        {
            return false;
        }

        if (json.IndexOf("\\u"u8) < 0)
        {
            return true;
        }

        var reader = new Utf8JsonReader(json);
        char[]? chars = null;
        try
        {
            while (reader.Read())
            {
                if (reader.TokenType is JsonTokenType.String or JsonTokenType.PropertyName && reader.ValueIsEscaped)
                {
                    if (chars is null || chars.Length < reader.ValueSpan.Length)
                    {
                        if (chars is not null)
                        {
                            System.Buffers.ArrayPool<char>.Shared.Return(chars);
                        }

                        chars = System.Buffers.ArrayPool<char>.Shared.Rent(reader.ValueSpan.Length);
                    }

                    reader.CopyString(chars);
                }
            }
        }
        catch (JsonException)
        {
            return true;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
        finally
        {
            if (chars is not null)
            {
                System.Buffers.ArrayPool<char>.Shared.Return(chars);
            }
        }

        return true;
    }

    private static void AppendContent(JsonElement content, StringBuilder text)
    {
        switch (content.ValueKind)
        {
            case JsonValueKind.String:
                text.Append(content.GetString()).Append('\n');
                break;
            case JsonValueKind.Array:
                foreach (var part in content.EnumerateArray())
                {
                    if (part.ValueKind == JsonValueKind.String)
                    {
                        text.Append(part.GetString()).Append('\n');
                    }
                    else if (part.ValueKind == JsonValueKind.Object && part.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String)
                    {
                        text.Append(t.GetString()).Append('\n');
                    }
                }

                break;
        }
    }

    private static int? Int(JsonElement root, string name) =>
        root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var n) ? n : null;
}

using System.Buffers;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Contracts.Streams;

/// <summary>What one SSE event's data of an OpenAI-style stream is.</summary>
public enum OpenAiChunkKind
{
    /// <summary>Not valid JSON (or not a JSON object), and not <c>[DONE]</c>.</summary>
    Invalid,

    /// <summary>The <c>[DONE]</c> sentinel that ends the stream.</summary>
    Done,

    /// <summary>A JSON object: a <c>chat.completion.chunk</c>, a legacy <c>text_completion</c>, or an error object.</summary>
    Json,
}

/// <summary>Where a chunk's <c>usage</c> object sits.</summary>
public enum OpenAiUsagePlacement
{
    /// <summary>No <c>usage</c> object (absent or <c>null</c>).</summary>
    None,

    /// <summary><c>usage</c> on a chunk that also has choices (a running total some backends put on every content chunk).</summary>
    WithChoices,

    /// <summary><c>usage</c> on a chunk whose <c>choices</c> is empty or absent (the final chunk of <c>stream_options.include_usage</c>).</summary>
    UsageOnly,
}

/// <summary>Token counts of an OpenAI <c>usage</c> object. A count the object did not carry is -1.</summary>
/// <param name="PromptTokens"><c>prompt_tokens</c>, or -1.</param>
/// <param name="CompletionTokens"><c>completion_tokens</c>, or -1.</param>
/// <param name="TotalTokens"><c>total_tokens</c>, or -1.</param>
public readonly record struct TokenUsage(long PromptTokens, long CompletionTokens, long TotalTokens);

/// <summary>What <see cref="OpenAiChunk.Parse(ReadOnlySpan{byte}, IBufferWriter{byte}?)"/> found in one chunk.</summary>
/// <param name="Kind">Invalid, Done, or Json.</param>
/// <param name="Choices">Elements of <c>choices</c> (0 when absent).</param>
/// <param name="ContentPieces">Non-empty strings among <c>choices[*].delta.content</c> and <c>choices[*].text</c>.</param>
/// <param name="ContentBytes">Their total length in UTF-8 bytes, unescaped.</param>
/// <param name="Usage">The <c>usage</c> counts when <see cref="UsagePlacement"/> is not None.</param>
/// <param name="UsagePlacement">Whether and where a <c>usage</c> object is.</param>
/// <param name="HasError">Whether the object has a top-level <c>error</c> (an error sent inside the stream).</param>
public readonly record struct OpenAiChunkInfo(
    OpenAiChunkKind Kind, int Choices, int ContentPieces, long ContentBytes, TokenUsage Usage, OpenAiUsagePlacement UsagePlacement, bool HasError)
{
    /// <summary>Whether a <c>usage</c> object is present.</summary>
    public bool HasUsage => UsagePlacement != OpenAiUsagePlacement.None;
}

/// <summary>What <see cref="OpenAiChunk.RemoveUsage"/> did.</summary>
public enum UsageRemoval
{
    /// <summary>No top-level <c>usage</c> property: nothing written, forward the original bytes.</summary>
    NotPresent,

    /// <summary>The JSON without <c>usage</c> was written to the output.</summary>
    Removed,

    /// <summary>Not valid JSON: nothing written.</summary>
    Invalid,
}

/// <summary>
/// Reads the OpenAI streaming format (<c>chat.completion.chunk</c> and legacy <c>text_completion</c> chunks, one per SSE
/// event's data) and non-streamed responses with <see cref="Utf8JsonReader"/>: content pieces, <c>usage</c>, <c>[DONE]</c>.
/// Never matches bytes; whitespace and property order do not matter. Invalid input is a result, never an exception.
/// </summary>
public static class OpenAiChunk
{
    private static readonly JsonReaderOptions s_readerOptions = new() { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 64 };

    private static readonly JsonWriterOptions s_writerOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, SkipValidation = false };

    /// <summary>Whether <paramref name="data"/> is the <c>[DONE]</c> sentinel (surrounding whitespace ignored).</summary>
    public static bool IsDone(ReadOnlySpan<byte> data) => data.Trim(" \t\r\n"u8).SequenceEqual("[DONE]"u8);

    /// <summary>
    /// Parses one SSE event's data: <c>[DONE]</c>, or a chunk object whose <c>choices[*].delta.content</c> and
    /// <c>choices[*].text</c> strings are counted (and, when <paramref name="content"/> is given, appended to it as
    /// unescaped UTF-8), and whose top-level <c>usage</c> is read.
    /// </summary>
    /// <param name="data">The event's data, UTF-8.</param>
    /// <param name="content">Optional sink for the content text (UTF-8, pieces concatenated), e.g. for counting tokens.</param>
    /// <returns>The result; <see cref="OpenAiChunkKind.Invalid"/> for anything that is not a JSON object or <c>[DONE]</c>.</returns>
    public static OpenAiChunkInfo Parse(ReadOnlySpan<byte> data, IBufferWriter<byte>? content = null)
    {
        if (IsDone(data))
        {
            return new OpenAiChunkInfo(OpenAiChunkKind.Done, 0, 0, 0, default, OpenAiUsagePlacement.None, false);
        }

        try
        {
            return ParseObject(data, content);
        }
        catch (JsonException)
        {
            return default;
        }
        catch (InvalidOperationException)
        {
            return default; // a number too large for Int64, a malformed string escape
        }
    }

    /// <summary>
    /// Reads the top-level <c>usage</c> of a non-streamed completion response body (<c>chat.completion</c> or
    /// <c>text_completion</c>).
    /// </summary>
    /// <param name="body">The response body, UTF-8 JSON.</param>
    /// <param name="usage">The counts when found.</param>
    /// <returns>False when the body is not valid JSON or has no <c>usage</c> object.</returns>
    public static bool TryReadUsage(ReadOnlySpan<byte> body, out TokenUsage usage)
    {
        var info = Parse(body);
        usage = info.Usage;
        return info.Kind == OpenAiChunkKind.Json && info.HasUsage;
    }

    /// <summary>
    /// Writes <paramref name="json"/> without its top-level <c>usage</c> property (whatever its value, <c>null</c> included),
    /// for a gateway that must hide usage the client did not ask for. The output is the same JSON re-written compactly by
    /// <see cref="Utf8JsonWriter"/>: no insignificant whitespace; string values byte-for-byte as in the input.
    /// </summary>
    /// <param name="json">One chunk's data or a response body, UTF-8.</param>
    /// <param name="output">Where the JSON without usage goes; written only when the result is <see cref="UsageRemoval.Removed"/>.</param>
    public static UsageRemoval RemoveUsage(ReadOnlySpan<byte> json, IBufferWriter<byte> output)
    {
        ArgumentNullException.ThrowIfNull(output);
        try
        {
            if (!HasTopLevelUsage(json))
            {
                return UsageRemoval.NotPresent;
            }
        }
        catch (JsonException)
        {
            return UsageRemoval.Invalid;
        }

        using var writer = new Utf8JsonWriter(output, s_writerOptions);
        var reader = new Utf8JsonReader(json, s_readerOptions);
        while (reader.Read())
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.PropertyName:
                    if (reader.CurrentDepth == 1 && reader.ValueTextEquals("usage"u8))
                    {
                        reader.Read();
                        reader.Skip();
                        continue;
                    }

                    WritePropertyName(writer, ref reader);
                    break;
                case JsonTokenType.StartObject:
                    writer.WriteStartObject();
                    break;
                case JsonTokenType.EndObject:
                    writer.WriteEndObject();
                    break;
                case JsonTokenType.StartArray:
                    writer.WriteStartArray();
                    break;
                case JsonTokenType.EndArray:
                    writer.WriteEndArray();
                    break;
                case JsonTokenType.String:
                    // The token as it was, quotes and escapes included.
                    writer.WriteRawValue(json.Slice((int)reader.TokenStartIndex, reader.ValueSpan.Length + 2), skipInputValidation: true);
                    break;
                default: // numbers, true, false, null
                    writer.WriteRawValue(reader.ValueSpan, skipInputValidation: true);
                    break;
            }
        }

        writer.Flush();
        return UsageRemoval.Removed;
    }

    private static void WritePropertyName(Utf8JsonWriter writer, ref Utf8JsonReader reader)
    {
        if (!reader.ValueIsEscaped)
        {
            writer.WritePropertyName(reader.ValueSpan);
            return;
        }

        var rented = ArrayPool<byte>.Shared.Rent(reader.ValueSpan.Length);
        try
        {
            var n = reader.CopyString(rented);
            writer.WritePropertyName(rented.AsSpan(0, n));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static bool HasTopLevelUsage(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json, s_readerOptions);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            throw new JsonException("Not a JSON object.");
        }

        var found = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            found |= reader.ValueTextEquals("usage"u8);
            reader.Read();
            reader.Skip();
        }

        // Read to the end so that trailing garbage makes it invalid.
        while (reader.Read())
        {
        }

        return found;
    }

    private static OpenAiChunkInfo ParseObject(ReadOnlySpan<byte> data, IBufferWriter<byte>? content)
    {
        var reader = new Utf8JsonReader(data, s_readerOptions);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            return default;
        }

        int choices = 0, pieces = 0;
        long bytes = 0;
        var usage = new TokenUsage(-1, -1, -1);
        var hasUsage = false;
        var hasError = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("choices"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.StartArray)
                {
                    while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                    {
                        choices++;
                        ReadChoice(ref reader, content, ref pieces, ref bytes);
                    }
                }
                else
                {
                    reader.Skip();
                }
            }
            else if (reader.ValueTextEquals("usage"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.StartObject)
                {
                    hasUsage = true;
                    usage = ReadUsage(ref reader);
                }
                else
                {
                    reader.Skip();
                }
            }
            else
            {
                hasError |= reader.ValueTextEquals("error"u8);
                reader.Read();
                reader.Skip();
            }
        }

        if (reader.TokenType != JsonTokenType.EndObject)
        {
            return default;
        }

        while (reader.Read())
        {
            // trailing garbage throws
        }

        var placement = !hasUsage ? OpenAiUsagePlacement.None : choices > 0 ? OpenAiUsagePlacement.WithChoices : OpenAiUsagePlacement.UsageOnly;
        return new OpenAiChunkInfo(OpenAiChunkKind.Json, choices, pieces, bytes, hasUsage ? usage : default, placement, hasError);
    }

    private static void ReadChoice(ref Utf8JsonReader reader, IBufferWriter<byte>? content, ref int pieces, ref long bytes)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return;
        }

        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("text"u8))
            {
                reader.Read();
                ReadContent(ref reader, content, ref pieces, ref bytes);
            }
            else if (reader.ValueTextEquals("delta"u8) || reader.ValueTextEquals("message"u8))
            {
                reader.Read();
                if (reader.TokenType != JsonTokenType.StartObject)
                {
                    reader.Skip();
                    continue;
                }

                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    var isContent = reader.ValueTextEquals("content"u8);
                    reader.Read();
                    if (isContent)
                    {
                        ReadContent(ref reader, content, ref pieces, ref bytes);
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }
    }

    private static void ReadContent(ref Utf8JsonReader reader, IBufferWriter<byte>? content, ref int pieces, ref long bytes)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            reader.Skip();
            return;
        }

        var length = reader.ValueIsEscaped ? UnescapedLength(ref reader, content) : CopyPlain(ref reader, content);
        if (length > 0)
        {
            pieces++;
            bytes += length;
        }
    }

    private static int CopyPlain(ref Utf8JsonReader reader, IBufferWriter<byte>? content)
    {
        var value = reader.ValueSpan;
        if (content is not null && !value.IsEmpty)
        {
            content.Write(value);
        }

        return value.Length;
    }

    private static int UnescapedLength(ref Utf8JsonReader reader, IBufferWriter<byte>? content)
    {
        // Unescaped UTF-8 is never longer than the escaped form.
        var max = reader.ValueSpan.Length;
        if (content is not null)
        {
            var n = reader.CopyString(content.GetSpan(max));
            content.Advance(n);
            return n;
        }

        var rented = ArrayPool<byte>.Shared.Rent(max);
        try
        {
            return reader.CopyString(rented);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static TokenUsage ReadUsage(ref Utf8JsonReader reader)
    {
        long prompt = -1, completion = -1, total = -1;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            ref var target = ref prompt;
            var known = true;
            if (reader.ValueTextEquals("prompt_tokens"u8))
            {
                target = ref prompt;
            }
            else if (reader.ValueTextEquals("completion_tokens"u8))
            {
                target = ref completion;
            }
            else if (reader.ValueTextEquals("total_tokens"u8))
            {
                target = ref total;
            }
            else
            {
                known = false;
            }

            reader.Read();
            if (known && reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var v))
            {
                target = v;
            }
            else
            {
                reader.Skip();
            }
        }

        return new TokenUsage(prompt, completion, total);
    }
}

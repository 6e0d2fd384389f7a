using System.Buffers;
using System.Buffers.Text;
using System.IO.Pipelines;
using System.Text.Json;

namespace ModelSim.Api;

/// <summary>
/// Server-sent events in the exact shape vLLM's OpenAI-compatible server streams them, written as bytes straight into
/// the response's <see cref="PipeWriter"/> (no strings, no serializer, nothing allocated per token).
/// </summary>
/// <remarks>
/// Each event is <c>data: {json}\n\n</c>. A chunk is a per-request head (id, object, created, model, up to
/// <c>"choices":[</c>, built once) followed by constant bytes around the token's UTF-8 text. Chat streams start with a
/// role chunk (<c>delta: {"role":"assistant","content":""}</c>) as vLLM does, sent together with the first token; the
/// last token's chunk carries <c>finish_reason: "length"</c>; with <c>stream_options.include_usage</c> a usage chunk
/// with empty <c>choices</c> follows; <c>data: [DONE]</c> ends the stream.
/// </remarks>
internal static class SseFormat
{
    private static ReadOnlySpan<byte> ChatRoleChoice => "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"u8;
    private static ReadOnlySpan<byte> ChatTokenStart => "{\"index\":0,\"delta\":{\"content\":\""u8;
    private static ReadOnlySpan<byte> ChatTokenEnd => "\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"u8;
    private static ReadOnlySpan<byte> ChatLastTokenEnd => "\"},\"logprobs\":null,\"finish_reason\":\"length\"}]}\n\n"u8;
    private static ReadOnlySpan<byte> CompletionTokenStart => "{\"index\":0,\"text\":\""u8;
    private static ReadOnlySpan<byte> CompletionTokenEnd => "\",\"logprobs\":null,\"finish_reason\":null,\"stop_reason\":null}]}\n\n"u8;
    private static ReadOnlySpan<byte> CompletionLastTokenEnd => "\",\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null}]}\n\n"u8;
    private static ReadOnlySpan<byte> UsageStart => "],\"usage\":{\"prompt_tokens\":"u8;
    private static ReadOnlySpan<byte> UsageTotal => ",\"total_tokens\":"u8;
    private static ReadOnlySpan<byte> UsageCompletion => ",\"completion_tokens\":"u8;
    private static ReadOnlySpan<byte> UsageEnd => "}}\n\n"u8;

    /// <summary>The stream's last event.</summary>
    public static ReadOnlySpan<byte> Done => "data: [DONE]\n\n"u8;

    /// <summary>Builds the per-request head <c>data: {"id":…,"object":…,"created":…,"model":…,"choices":[</c>.</summary>
    /// <param name="id">Response id (<c>chatcmpl-…</c> or <c>cmpl-…</c>).</param>
    /// <param name="objectType"><c>chat.completion.chunk</c> or <c>text_completion</c>.</param>
    /// <param name="created">Unix time, seconds.</param>
    /// <param name="model">Model name, JSON-escaped here.</param>
    public static byte[] BuildHead(string id, string objectType, long created, string model)
    {
        var buffer = new ArrayBufferWriter<byte>(128 + model.Length);
        buffer.Write("data: {\"id\":"u8);
        WriteJsonString(buffer, id);
        buffer.Write(",\"object\":"u8);
        WriteJsonString(buffer, objectType);
        buffer.Write(",\"created\":"u8);
        WriteNumber(buffer, created);
        buffer.Write(",\"model\":"u8);
        WriteJsonString(buffer, model);
        buffer.Write(",\"choices\":["u8);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>The first chat chunk: the assistant role with empty content.</summary>
    public static void WriteChatRole(PipeWriter writer, ReadOnlySpan<byte> head)
    {
        writer.Write(head);
        writer.Write(ChatRoleChoice);
    }

    /// <summary>A chat chunk carrying one token in <c>choices[0].delta.content</c>.</summary>
    /// <param name="writer">The response body.</param>
    /// <param name="head">From <see cref="BuildHead"/>.</param>
    /// <param name="tokenUtf8">The token's text; must need no JSON escaping (the simulator's vocabulary is plain ASCII letters).</param>
    /// <param name="last">True for the last token: its chunk carries <c>finish_reason: "length"</c>.</param>
    public static void WriteChatToken(PipeWriter writer, ReadOnlySpan<byte> head, ReadOnlySpan<byte> tokenUtf8, bool last)
    {
        writer.Write(head);
        writer.Write(ChatTokenStart);
        writer.Write(tokenUtf8);
        writer.Write(last ? ChatLastTokenEnd : ChatTokenEnd);
    }

    /// <summary>A completions chunk carrying one token in <c>choices[0].text</c>.</summary>
    public static void WriteCompletionToken(PipeWriter writer, ReadOnlySpan<byte> head, ReadOnlySpan<byte> tokenUtf8, bool last)
    {
        writer.Write(head);
        writer.Write(CompletionTokenStart);
        writer.Write(tokenUtf8);
        writer.Write(last ? CompletionLastTokenEnd : CompletionTokenEnd);
    }

    /// <summary>The usage chunk: <c>"choices":[]</c> and <c>usage</c>, as vLLM sends with <c>include_usage</c>.</summary>
    public static void WriteUsage(PipeWriter writer, ReadOnlySpan<byte> head, int promptTokens, int completionTokens)
    {
        writer.Write(head);
        writer.Write(UsageStart);
        WriteNumber(writer, promptTokens);
        writer.Write(UsageTotal);
        WriteNumber(writer, (long)promptTokens + completionTokens);
        writer.Write(UsageCompletion);
        WriteNumber(writer, completionTokens);
        writer.Write(UsageEnd);
    }

    /// <summary>Writes an integer as UTF-8 digits.</summary>
    public static void WriteNumber(IBufferWriter<byte> writer, long value)
    {
        var span = writer.GetSpan(20);
        Utf8Formatter.TryFormat(value, span, out var written);
        writer.Advance(written);
    }

    private static void WriteJsonString(IBufferWriter<byte> writer, string value)
    {
        var encoded = JsonEncodedText.Encode(value);
        writer.Write("\""u8);
        writer.Write(encoded.EncodedUtf8Bytes);
        writer.Write("\""u8);
    }
}

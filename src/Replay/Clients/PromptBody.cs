using System.Buffers;
using System.Buffers.Text;
using System.Text;
using Replay.Sources;

namespace Replay.Clients;

/// <summary>
/// Writes a <see cref="SyntheticPrompt"/>'s chat completion body straight into a rented buffer:
/// <c>{"model":M,"messages":[{"role":"user","content":"hello hello …"}],"max_tokens":N[,"stream":true,"stream_options":{"include_usage":true}]}</c>,
/// the content being exactly <see cref="Contracts.Tokens.TokenCounter.BuildPrompt"/>'s text (n cl100k tokens), or with a
/// <see cref="SyntheticPrompt.Text"/> its group's prefix and n words of the request's own.
/// </summary>
internal static class PromptBody
{
    private static ReadOnlySpan<byte> Start => "{\"model\":"u8;
    private static ReadOnlySpan<byte> Messages => ",\"messages\":[{\"role\":\"user\",\"content\":\""u8;
    private static ReadOnlySpan<byte> MaxTokens => "\"}],\"max_tokens\":"u8;
    private static ReadOnlySpan<byte> Stream => ",\"stream\":true,\"stream_options\":{\"include_usage\":true}"u8;
    private static ReadOnlySpan<byte> First => "hello"u8;
    private static ReadOnlySpan<byte> Filler => " hello"u8;

    /// <summary>Rents a buffer and writes the body; returns the array (give it back to <see cref="ArrayPool{T}.Shared"/>) and the length.</summary>
    public static (byte[] Buffer, int Length) Rent(SyntheticPrompt prompt)
    {
        var model = prompt.ModelJson;
        var text = prompt.Text;
        var promptLength = text is null ? PromptLength(prompt.PromptTokens) : text.MaxLength(prompt.PromptTokens);
        var length = Start.Length + model.Length + 2 + Messages.Length + promptLength + MaxTokens.Length + 11 + Stream.Length + 1;
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        var span = buffer.AsSpan();
        var n = 0;
        Append(span, ref n, Start);
        span[n++] = (byte)'"';
        Append(span, ref n, model);
        span[n++] = (byte)'"';
        Append(span, ref n, Messages);
        if (text is not null)
        {
            n += text.Write(span[n..], text.NextRequest(), prompt.PromptTokens);
        }
        else if (prompt.PromptTokens > 0)
        {
            Append(span, ref n, First);
            for (var i = 1; i < prompt.PromptTokens; i++)
            {
                Append(span, ref n, Filler);
            }
        }

        Append(span, ref n, MaxTokens);
        Utf8Formatter.TryFormat(prompt.MaxTokens, span[n..], out var written);
        n += written;
        if (prompt.Stream)
        {
            Append(span, ref n, Stream);
        }

        span[n++] = (byte)'}';
        return (buffer, n);
    }

    /// <summary>The body as a string (tests, the request log).</summary>
    public static string ToText(SyntheticPrompt prompt)
    {
        var (buffer, length) = Rent(prompt);
        try
        {
            return Encoding.UTF8.GetString(buffer, 0, length);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static int PromptLength(int tokens) => tokens <= 0 ? 0 : First.Length + ((tokens - 1) * Filler.Length);

    private static void Append(Span<byte> span, ref int n, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(span[n..]);
        n += bytes.Length;
    }
}

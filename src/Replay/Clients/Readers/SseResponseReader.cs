using System.Buffers;
using System.Globalization;
using Contracts.Streams;
using Replay.Measurement;

namespace Replay.Clients.Readers;

/// <summary>
/// Reads a streamed OpenAI-style response (<c>text/event-stream</c>): the shared push parser
/// <see cref="SseEventReader"/> (WHATWG event stream rules: LF, CR or CRLF line ends, <c>data:</c> lines joined, a
/// space after the colon or not) and <see cref="OpenAiChunk.Parse"/> (<see cref="System.Text.Json.Utf8JsonReader"/>)
/// over each event's data. An event is a token event when its JSON has non-empty content
/// (<c>choices[*].delta.content</c> or <c>choices[*].text</c>), however the JSON is spaced or ordered; each is stamped
/// with the time its bytes arrived. Events that are neither JSON nor <c>[DONE]</c> (or too large to hold) are counted
/// as unparseable, with the first one kept as a sample for the report.
/// </summary>
internal sealed class SseResponseReader : ISseHandler
{
    /// <summary>Largest event held (16 MiB); a larger one is skipped and counted as unparseable.</summary>
    internal const int MaxEventBytes = HttpSender.MaxMessageBytes;

    private const int ReadBufferSize = 4 * 1024;
    private const int SampleChars = 120;

    private readonly TokenTimes _tokens;
    private readonly ArrayBufferWriter<byte>? _text;
    private long _now;

    private SseResponseReader(TokenTimes tokens, bool captureText)
    {
        _tokens = tokens;
        _text = captureText ? new ArrayBufferWriter<byte>(256) : null;
    }

    /// <summary>Whether the <c>[DONE]</c> sentinel came.</summary>
    public bool SawDone { get; private set; }

    /// <summary>Events with output text.</summary>
    public int TokenEvents { get; private set; }

    /// <summary>The last <c>usage.completion_tokens</c> seen, or -1.</summary>
    public long CompletionTokens { get; private set; } = -1;

    /// <summary>Events that were not JSON, not <c>[DONE]</c>, or larger than <see cref="MaxEventBytes"/>.</summary>
    public int Unparseable { get; private set; }

    /// <summary>The first unparseable event's data (at most 120 characters), or null.</summary>
    public string? FirstUnparseable { get; private set; }

    /// <summary>The content text, when asked for.</summary>
    public string? Text => _text is null ? null : System.Text.Encoding.UTF8.GetString(_text.WrittenSpan);

    /// <summary>Reads <paramref name="content"/> to its end.</summary>
    /// <param name="content">The response body.</param>
    /// <param name="tokens">Receives the arrival time of each token event.</param>
    /// <param name="captureText">Keep the content text (<see cref="Text"/>).</param>
    /// <param name="time">The clock that stamps tokens.</param>
    /// <param name="cancellationToken">Ends the read.</param>
    public static async ValueTask<SseResponseReader> ReadAsync(Stream content, TokenTimes tokens, bool captureText, TimeProvider time, CancellationToken cancellationToken)
    {
        var handler = new SseResponseReader(tokens, captureText);
        using var parser = new SseEventReader(MaxEventBytes);
        var buffer = ArrayPool<byte>.Shared.Rent(ReadBufferSize);
        try
        {
            while (true)
            {
                var read = await content.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    return handler;
                }

                handler._now = time.GetTimestamp();
                parser.Append(buffer.AsSpan(0, read), handler);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <inheritdoc/>
    public void OnEvent(in SseEvent e)
    {
        var info = OpenAiChunk.Parse(e.Data, _text);
        switch (info.Kind)
        {
            case OpenAiChunkKind.Done:
                SawDone = true;
                return;
            case OpenAiChunkKind.Invalid:
                Unparseable++;
                FirstUnparseable ??= Sample(e.Data);
                return;
        }

        if (info.HasUsage && info.Usage.CompletionTokens >= 0)
        {
            CompletionTokens = info.Usage.CompletionTokens;
        }

        if (info.ContentPieces > 0)
        {
            TokenEvents++;
            _tokens.Add(_now);
        }
    }

    /// <inheritdoc/>
    public void OnEventSkipped(long startOffset, long endOffset)
    {
        Unparseable++;
        FirstUnparseable ??= string.Create(CultureInfo.InvariantCulture, $"(an event of {endOffset - startOffset} bytes, over the {MaxEventBytes}-byte bound)");
    }

    private static string Sample(ReadOnlySpan<byte> data)
    {
        var text = System.Text.Encoding.UTF8.GetString(data.Length > SampleChars * 4 ? data[..(SampleChars * 4)] : data);
        return text.Length > SampleChars ? text[..SampleChars] + "…" : text;
    }
}

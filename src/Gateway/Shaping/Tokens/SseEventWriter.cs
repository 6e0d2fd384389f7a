using System.Buffers;

namespace Gateway.Shaping.Tokens;

/// <summary>Writes an SSE event with new data in place of its old (WHATWG HTML §9.2.5 line and field syntax).</summary>
internal static class SseEventWriter
{
    /// <summary>
    /// Writes <paramref name="rawEvent"/> (an event's lines as received, through the blank line that ends it) to
    /// <paramref name="output"/> with its <c>data</c> lines replaced by one <c>data: </c> line holding
    /// <paramref name="data"/> (which must not contain CR or LF), where the first of them was; every other line and
    /// every line end as it was.
    /// </summary>
    public static void WriteWithData(ReadOnlySpan<byte> rawEvent, ReadOnlySpan<byte> data, IBufferWriter<byte> output)
    {
        var dataWritten = false;
        while (!rawEvent.IsEmpty)
        {
            var end = rawEvent.IndexOfAny((byte)'\r', (byte)'\n');
            var line = end < 0 ? rawEvent : rawEvent[..end];
            var eolLength = end < 0 ? 0 : rawEvent[end] == (byte)'\r' && end + 1 < rawEvent.Length && rawEvent[end + 1] == (byte)'\n' ? 2 : 1;
            var eol = end < 0 ? default : rawEvent.Slice(end, eolLength);
            rawEvent = end < 0 ? default : rawEvent[(end + eolLength)..];
            if (IsDataLine(line))
            {
                if (!dataWritten)
                {
                    dataWritten = true;
                    output.Write("data: "u8);
                    output.Write(data);
                    output.Write(eol);
                }

                continue;
            }

            output.Write(line);
            output.Write(eol);
        }
    }

    private static bool IsDataLine(ReadOnlySpan<byte> line) =>
        line.StartsWith("data"u8) && (line.Length == 4 || line[4] == (byte)':');
}

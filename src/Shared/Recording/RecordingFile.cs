using System.Runtime.CompilerServices;
using System.Text.Json;

namespace Contracts.Recording;

/// <summary>
/// One recording as an append-only JSON Lines file: the file store's format and the export format. Each line is
/// an envelope <c>{"type": ..., ...}</c>: <c>recording</c> (a state change, with the recording's name and state),
/// <c>session</c> (the latest state of a session; a later line for the same session wins) or <c>exchange</c>.
/// Lines are only ever appended, so a crash loses at most the last, partial line, which readers skip.
/// </summary>
public static class RecordingFile
{
    /// <summary>Appends a state change line.</summary>
    public static byte[] StateLine(string name, string state, long atUnixMicros) => Line(new RecordingFileLine
    {
        Type = "recording",
        Recording = new RecordingInfo { Name = name, State = state, LastUnixMicros = atUnixMicros },
    });

    /// <summary>A session line.</summary>
    public static byte[] SessionLine(SessionRecord session) => Line(new RecordingFileLine { Type = "session", Session = session });

    /// <summary>An exchange line.</summary>
    public static byte[] ExchangeLine(ExchangeRecord exchange) => Line(new RecordingFileLine { Type = "exchange", Exchange = exchange });

    private static byte[] Line(RecordingFileLine line)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(line, RecordingJsonContext.Relaxed.RecordingFileLine);
        var bytes = new byte[json.Length + 1];
        json.CopyTo(bytes, 0);
        bytes[^1] = (byte)'\n';
        return bytes;
    }

    /// <summary>What one pass over a file found.</summary>
    public sealed class Contents
    {
        /// <summary>The name from the last state line, if any.</summary>
        public string? Name { get; internal set; }

        /// <summary>The state from the last state line (stopped when there is none).</summary>
        public string State { get; internal set; } = RecordingStates.Stopped;

        /// <summary>Sessions, latest state of each, in order of first appearance.</summary>
        public Dictionary<string, SessionRecord> Sessions { get; } = new(StringComparer.Ordinal);

        /// <summary>Exchange lines counted.</summary>
        public long Exchanges { get; internal set; }

        /// <summary>Bytes of exchange lines.</summary>
        public long ExchangeBytes { get; internal set; }

        /// <summary>First and last exchange start, Unix microseconds.</summary>
        public long? First { get; internal set; }

        /// <inheritdoc cref="First"/>
        public long? Last { get; internal set; }
    }

    /// <summary>
    /// Reads every line of <paramref name="path"/>: state and sessions into the result, exchanges (and unreadable
    /// lines) to <paramref name="onExchange"/> when given.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static async Task<Contents> ScanAsync(string path, Func<StoredExchange, ValueTask>? onExchange, CancellationToken cancellationToken)
    {
        var contents = new Contents();
        await foreach (var (lineNo, bytes, line, error) in ReadLinesAsync(path, cancellationToken))
        {
            if (error is not null)
            {
                if (onExchange is not null)
                {
                    await onExchange(new StoredExchange($"line {lineNo}", null, error));
                }

                continue;
            }

            switch (line!.Type)
            {
                case "recording" when line.Recording is { } r:
                    contents.Name = r.Name;
                    contents.State = r.State;
                    break;
                case "session" when line.Session is { } s:
                    contents.Sessions[s.SessionId] = s;
                    break;
                case "exchange" when line.Exchange is { } x:
                    if (x.SchemaVersion is < 1 or > ExchangeRecord.CurrentSchemaVersion)
                    {
                        if (onExchange is not null)
                        {
                            await onExchange(new StoredExchange($"line {lineNo}", null, $"exchange record of schema version {x.SchemaVersion}; this version reads 1 to {ExchangeRecord.CurrentSchemaVersion}"));
                        }

                        break;
                    }

                    contents.Exchanges++;
                    contents.ExchangeBytes += bytes;
                    contents.First ??= x.Timing.StartUnixMicros;
                    contents.Last = x.Timing.StartUnixMicros;
                    if (onExchange is not null)
                    {
                        await onExchange(new StoredExchange($"line {lineNo}", x, null));
                    }

                    break;
                default:
                    if (onExchange is not null)
                    {
                        await onExchange(new StoredExchange($"line {lineNo}", null, $"unknown line type '{line.Type}' or missing payload"));
                    }

                    break;
            }
        }

        return contents;
    }

    /// <summary>Exchanges of a file in order, unreadable lines as errors.</summary>
    public static async IAsyncEnumerable<StoredExchange> ReadExchangesAsync(string path, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var (lineNo, _, line, error) in ReadLinesAsync(path, cancellationToken))
        {
            if (error is not null)
            {
                yield return new StoredExchange($"line {lineNo}", null, error);
            }
            else if (line!.Type == "exchange")
            {
                if (line.Exchange is not { } x)
                {
                    yield return new StoredExchange($"line {lineNo}", null, "exchange line without an exchange");
                }
                else if (x.SchemaVersion is < 1 or > ExchangeRecord.CurrentSchemaVersion)
                {
                    yield return new StoredExchange($"line {lineNo}", null, $"exchange record of schema version {x.SchemaVersion}; this version reads 1 to {ExchangeRecord.CurrentSchemaVersion}");
                }
                else
                {
                    yield return new StoredExchange($"line {lineNo}", x, null);
                }
            }
        }
    }

    private static async IAsyncEnumerable<(long LineNo, long Bytes, RecordingFileLine? Line, string? Error)> ReadLinesAsync(string path, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await using var stream = new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.Open,
            Access = FileAccess.Read,
            Share = FileShare.ReadWrite | FileShare.Delete,
            Options = FileOptions.Asynchronous | FileOptions.SequentialScan,
            BufferSize = 0,
        });

        // Lines are split on '\n' as bytes and parsed from UTF-8 directly. A last segment without '\n' is a line
        // whose write never completed (a crash, or a writer still writing): it is not read.
        var buffer = new byte[1 << 16];
        int start = 0, end = 0;
        long lineNo = 0;
        while (true)
        {
            var newline = Array.IndexOf(buffer, (byte)'\n', start, end - start);
            if (newline < 0)
            {
                if (start > 0)
                {
                    Buffer.BlockCopy(buffer, start, buffer, 0, end - start);
                    end -= start;
                    start = 0;
                }

                if (end == buffer.Length)
                {
                    Array.Resize(ref buffer, buffer.Length * 2);
                }

                var read = await stream.ReadAsync(buffer.AsMemory(end), cancellationToken);
                if (read == 0)
                {
                    yield break;
                }

                end += read;
                continue;
            }

            lineNo++;
            var length = newline - start;
            var (line, error) = Parse(buffer.AsSpan(start, length));
            start = newline + 1;
            if (length > 0)
            {
                yield return (lineNo, length + 1, line, error);
            }
        }

        static (RecordingFileLine? Line, string? Error) Parse(ReadOnlySpan<byte> utf8)
        {
            if (utf8.IsEmpty)
            {
                return (null, null);
            }

            try
            {
                var line = JsonSerializer.Deserialize(utf8, RecordingJsonContext.Relaxed.RecordingFileLine);
                return line is null ? (null, "empty record") : (line, null);
            }
            catch (JsonException ex)
            {
                return (null, $"not valid JSON: {ex.Message}");
            }
        }
    }
}

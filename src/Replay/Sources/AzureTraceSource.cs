using System.Globalization;

namespace Replay.Sources;

/// <summary>
/// Reads an Azure LLM inference trace (<c>TIMESTAMP,ContextTokens,GeneratedTokens</c>, as published with the Splitwise
/// paper: Patel et al., "Splitwise: Efficient generative LLM inference using phase splitting", ISCA 2024; data
/// CC-BY 4.0). Each row becomes one OpenAI chat completion that arrives at the row's offset from the first row, with a
/// prompt of exactly <c>ContextTokens</c> cl100k tokens and <c>max_tokens = GeneratedTokens</c>.
/// </summary>
/// <remarks>A malformed row is skipped and counted. The prompt text is written at send time, so even the hour-long
/// traces hold only three numbers per row in memory.</remarks>
internal static class AzureTraceSource
{
    private static readonly string[] s_formats = ["yyyy-MM-dd HH:mm:ss.FFFFFFF", "yyyy-MM-dd HH:mm:ss", "yyyy-MM-ddTHH:mm:ss.FFFFFFF"];

    /// <summary>Reads <paramref name="path"/>.</summary>
    /// <exception cref="InputException">The file is missing or holds no usable row.</exception>
    public static async Task<Workload> LoadAsync(string path, SourceSettings settings, CancellationToken cancellationToken)
    {
        if (!File.Exists(path))
        {
            throw new InputException($"--source azure-llm:{path}: file '{Path.GetFullPath(path)}' not found.");
        }

        var skipped = new List<SkippedRecord>();
        long skippedTotal = 0;
        var rows = new List<(DateTime At, int Prompt, int Output, long Line)>();
        using (var reader = new StreamReader(path))
        {
            long lineNo = 0;
            while (await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false) is { } line)
            {
                lineNo++;
                if (line.Length == 0 || (lineNo == 1 && line.StartsWith("TIMESTAMP", StringComparison.OrdinalIgnoreCase)))
                {
                    continue;
                }

                if (TryParse(line, out var at, out var prompt, out var output, out var error))
                {
                    rows.Add((at, prompt, output, lineNo));
                }
                else
                {
                    skippedTotal++;
                    if (skipped.Count < SkippedRecord.MaxKept)
                    {
                        skipped.Add(new SkippedRecord($"line {lineNo}", error));
                    }
                }
            }
        }

        if (rows.Count == 0)
        {
            throw new InputException($"--source azure-llm:{path}: no usable row (expected CSV TIMESTAMP,ContextTokens,GeneratedTokens{(skipped.Count > 0 ? $"; {skipped[0].Position}: {skipped[0].Reason}" : string.Empty)}).");
        }

        var outOfOrder = SourceTimeline.Sort(rows, static r => r.At.Ticks / 10);
        var starts = new long[rows.Count];
        for (var i = 0; i < rows.Count; i++)
        {
            starts[i] = rows[i].At.Ticks / 10;
        }

        // A trace row has no duration: a gap is measured from one arrival to the next.
        var moved = SourceTimeline.CloseGaps(starts, new long[rows.Count], settings.MaxGap is { } gap ? (long)(gap.TotalMilliseconds * 1000) : null, out var removedMicros);
        var row = 0;
        var cutoffMs = settings.SourceDuration?.TotalMilliseconds ?? double.MaxValue;
        var limit = settings.Limit ?? long.MaxValue;
        var sessions = new List<PlannedSession>();
        var headers = new List<KeyValuePair<string, string>> { new("content-type", "application/json") };
        foreach (var (at, prompt, output, line) in rows)
        {
            var offset = (moved[row] - moved[0]) / 1000.0;
            if (offset >= cutoffMs || sessions.Count >= limit)
            {
                break;
            }

            removedMicros = starts[row] - moved[row]; // what was cut before the last row taken
            row++;

            var id = string.Create(CultureInfo.InvariantCulture, $"azure-{line}");
            sessions.Add(new PlannedSession
            {
                Id = id,
                OriginalId = id,
                StartOffsetMs = offset,
                Requests =
                [
                    new PlannedRequest
                    {
                        Protocol = RequestProtocol.Http,
                        PathAndQuery = "/v1/chat/completions",
                        Headers = headers,
                        Prompt = new SyntheticPrompt(prompt, output, settings.Model, settings.Stream),
                        Streamed = settings.Stream,
                        Route = "POST /v1/chat/completions",
                    },
                ],
            });
        }

        return new Workload($"Azure LLM trace {Path.GetFileName(path)}", sessions, skipped, skippedTotal)
        {
            OutOfOrder = outOfOrder,
            SourceTimeRemovedMs = removedMicros / 1000.0,
            SpanMs = sessions[^1].StartOffsetMs,
        };
    }

    /// <summary>Parses one row; false with a reason when it is malformed.</summary>
    internal static bool TryParse(string line, out DateTime at, out int prompt, out int output, out string error)
    {
        at = default;
        prompt = output = 0;
        var parts = line.Split(',');
        if (parts.Length != 3)
        {
            error = $"expected 3 comma-separated fields, found {parts.Length}";
            return false;
        }

        if (!DateTime.TryParseExact(parts[0].Trim(), s_formats, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out at))
        {
            error = $"TIMESTAMP '{parts[0]}' is not yyyy-MM-dd HH:mm:ss.fffffff";
            return false;
        }

        if (!int.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out prompt) || prompt < 0)
        {
            error = $"ContextTokens '{parts[1]}' is not a non-negative integer";
            return false;
        }

        if (!int.TryParse(parts[2], NumberStyles.Integer, CultureInfo.InvariantCulture, out output) || output < 1)
        {
            error = $"GeneratedTokens '{parts[2]}' is not a positive integer";
            return false;
        }

        error = string.Empty;
        return true;
    }
}

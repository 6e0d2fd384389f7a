using System.Globalization;
using Contracts.Recording;
using Replay.Sources;

namespace Replay.Cli;

/// <summary><c>replay list</c>: the recordings of a store (name, state, exchanges, sessions, size, first and last time), or one recording's sessions.</summary>
internal static class ListCommand
{
    /// <summary>Lists; returns the exit code.</summary>
    public static async Task<int> ExecuteAsync(string source, string? recording, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        if (!RecordingStores.IsStore(source))
        {
            await error.WriteLineAsync($"replay: --source '{source}' is not a recording store (file:DIR or redis://HOST:PORT).").ConfigureAwait(false);
            return ExitCodes.UsageOrInput;
        }

        IRecordingStore store;
        string description;
        try
        {
            (store, description) = await RecordingStores.OpenAsync(source, cancellationToken).ConfigureAwait(false);
        }
        catch (InputException ex)
        {
            await error.WriteLineAsync($"replay: {ex.Message}").ConfigureAwait(false);
            return ExitCodes.UsageOrInput;
        }

        await using (store.ConfigureAwait(false))
        {
            var c = CultureInfo.InvariantCulture;
            if (recording is null)
            {
                var all = await store.ListAsync(cancellationToken).ConfigureAwait(false);
                await output.WriteLineAsync($"{all.Count} recording(s) in the {description}").ConfigureAwait(false);
                await output.WriteLineAsync(string.Create(c, $"{"NAME",-32} {"STATE",-10} {"EXCHANGES",10} {"SESSIONS",9} {"BYTES",12}  FIRST → LAST (UTC)")).ConfigureAwait(false);
                foreach (var r in all)
                {
                    await output.WriteLineAsync(string.Create(c, $"{r.Name,-32} {r.State,-10} {r.Count,10} {r.Sessions,9} {r.Bytes,12}  {Time(r.FirstUnixMicros)} → {Time(r.LastUnixMicros)}")).ConfigureAwait(false);
                }

                return ExitCodes.Ok;
            }

            if (!RecordingNames.IsValid(recording) || await store.GetAsync(recording, cancellationToken).ConfigureAwait(false) is not { } info)
            {
                var known = await store.ListAsync(cancellationToken).ConfigureAwait(false);
                await error.WriteLineAsync($"replay: --recording '{recording}' not found in the {description} (recordings there: {(known.Count == 0 ? "none" : string.Join(", ", known.Select(static k => k.Name)))}).").ConfigureAwait(false);
                return ExitCodes.UsageOrInput;
            }

            var sessions = await store.ReadSessionsAsync(recording, cancellationToken).ConfigureAwait(false);
            await output.WriteLineAsync(string.Create(c, $"recording {info.Name} ({info.State}): {info.Count} exchange(s), {sessions.Count} session(s)")).ConfigureAwait(false);
            await output.WriteLineAsync(string.Create(c, $"{"SESSION",-40} {"CLIENT",-20} {"EXCHANGES",9}  FIRST → LAST (UTC)")).ConfigureAwait(false);
            foreach (var s in sessions.OrderBy(static s => s.FirstSeenUnixMicros))
            {
                await output.WriteLineAsync(string.Create(c, $"{s.SessionId,-40} {s.Client ?? "-",-20} {s.Count,9}  {Time(s.FirstSeenUnixMicros)} → {Time(s.LastSeenUnixMicros)}")).ConfigureAwait(false);
            }

            return ExitCodes.Ok;
        }
    }

    private static string Time(long? micros) => micros is { } m
        ? DateTimeOffset.FromUnixTimeMilliseconds(m / 1000).ToString("yyyy-MM-dd HH:mm:ss.fff", CultureInfo.InvariantCulture)
        : "-";
}

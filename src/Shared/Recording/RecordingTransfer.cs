namespace Contracts.Recording;

/// <summary>
/// Copies a recording between stores: export from Redis to a file (the file store's format), import from a file
/// back into Redis, or any other pair. Exchanges keep their order and content; sessions are copied as they are.
/// </summary>
public static class RecordingTransfer
{
    /// <summary>What a copy did.</summary>
    /// <param name="Exchanges">Exchanges copied.</param>
    /// <param name="Sessions">Sessions copied.</param>
    /// <param name="Skipped">Unreadable records skipped (each is reported to the caller's callback).</param>
    public sealed record Result(long Exchanges, long Sessions, long Skipped);

    /// <summary>
    /// Copies recording <paramref name="name"/> from <paramref name="source"/> to <paramref name="target"/> as
    /// <paramref name="targetName"/> (the same name when null), leaving it stopped.
    /// </summary>
    /// <param name="source">The store to read.</param>
    /// <param name="name">The recording to copy.</param>
    /// <param name="target">The store to write.</param>
    /// <param name="targetName">The name in the target; <paramref name="name"/> when null.</param>
    /// <param name="onSkipped">Called for each unreadable record (position and reason); may be null.</param>
    /// <param name="cancellationToken">Cancels the copy.</param>
    /// <exception cref="KeyNotFoundException">The source has no such recording.</exception>
    public static async Task<Result> CopyAsync(IRecordingStore source, string name, IRecordingStore target, string? targetName,
        Action<StoredExchange>? onSkipped, CancellationToken cancellationToken)
    {
        targetName ??= name;
        RecordingNames.Validate(targetName);
        if (await source.GetAsync(name, cancellationToken) is null)
        {
            throw new KeyNotFoundException($"There is no recording '{name}' in the {source.Kind} store.");
        }

        var sessions = await source.ReadSessionsAsync(name, cancellationToken);
        await target.StartAsync(targetName, cancellationToken);
        var batch = new List<ExchangeRecord>(256);
        long exchanges = 0, skipped = 0;
        await foreach (var stored in source.ReadExchangesAsync(name, cancellationToken))
        {
            if (stored.Record is null)
            {
                skipped++;
                onSkipped?.Invoke(stored);
                continue;
            }

            batch.Add(targetName == name ? stored.Record : stored.Record with { Recording = targetName });
            if (batch.Count == batch.Capacity)
            {
                await target.AppendAsync(targetName, batch, [], cancellationToken);
                exchanges += batch.Count;
                batch.Clear();
            }
        }

        await target.AppendAsync(targetName, batch, sessions, cancellationToken);
        exchanges += batch.Count;
        await target.StopAsync(targetName, cancellationToken);
        return new Result(exchanges, sessions.Count, skipped);
    }

    /// <summary>Exports a recording to one file (the file store's format, <c>.jsonl</c>), which can be imported again.</summary>
    /// <param name="source">The store to read.</param>
    /// <param name="name">The recording to export.</param>
    /// <param name="path">The file to write; its name without <c>.jsonl</c> becomes the recording's name in it.</param>
    /// <param name="onSkipped">Called for each unreadable record; may be null.</param>
    /// <param name="cancellationToken">Cancels the export.</param>
    /// <exception cref="IOException">The file exists already.</exception>
    public static async Task<Result> ExportAsync(IRecordingStore source, string name, string path, Action<StoredExchange>? onSkipped, CancellationToken cancellationToken)
    {
        var (directory, fileName) = Split(path);
        if (File.Exists(path))
        {
            throw new IOException($"'{path}' exists already; export never overwrites.");
        }

        Result result;
        await using (var target = new FileRecordingStore(directory))
        {
            result = await CopyAsync(source, name, target, fileName, onSkipped, cancellationToken);
        }

        // The file store's append lock guards writers that share a store; an export had one writer and is finished,
        // so the lock file would only be litter beside the exported file.
        try
        {
            File.Delete(Path.GetFullPath(path) + ".lock");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Best effort: the export itself is complete.
        }

        return result;
    }

    /// <summary>Imports a file written by <see cref="ExportAsync"/> (or the file store) into <paramref name="target"/>.</summary>
    /// <param name="path">The <c>.jsonl</c> file to read.</param>
    /// <param name="target">The store to write.</param>
    /// <param name="name">The recording's name in the target; the file's name when null.</param>
    /// <param name="onSkipped">Called for each unreadable record; may be null.</param>
    /// <param name="cancellationToken">Cancels the import.</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static async Task<Result> ImportAsync(string path, IRecordingStore target, string? name, Action<StoredExchange>? onSkipped, CancellationToken cancellationToken)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"'{path}' does not exist.", path);
        }

        var (directory, fileName) = Split(path);
        await using var source = new FileRecordingStore(directory);
        return await CopyAsync(source, fileName, target, name ?? fileName, onSkipped, cancellationToken);
    }

    private static (string Directory, string Name) Split(string path)
    {
        var full = Path.GetFullPath(path);
        if (!full.EndsWith(".jsonl", StringComparison.Ordinal))
        {
            throw new ArgumentException($"'{path}': a recording file must end in .jsonl.", nameof(path));
        }

        var name = Path.GetFileNameWithoutExtension(full);
        RecordingNames.Validate(name);
        return (Path.GetDirectoryName(full)!, name);
    }
}

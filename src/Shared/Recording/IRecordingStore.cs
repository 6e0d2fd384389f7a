namespace Contracts.Recording;

/// <summary>
/// Where recordings live: Redis Streams (<c>RedisRecordingStore</c>) or append-only files
/// (<see cref="FileRecordingStore"/>), with the same schema and the same reading order. The gateway writes through
/// it; the replay tool, <c>replay list</c> and export/import read through it.
/// </summary>
public interface IRecordingStore : IAsyncDisposable
{
    /// <summary><c>redis</c> or <c>file</c>.</summary>
    string Kind { get; }

    /// <summary>Marks a recording as started (creating it when new; a restarted recording keeps its data).</summary>
    Task StartAsync(string name, CancellationToken cancellationToken);

    /// <summary>Marks a recording as stopped.</summary>
    Task StopAsync(string name, CancellationToken cancellationToken);

    /// <summary>
    /// Appends exchanges (in order) and the latest state of the sessions they touched, in one batch.
    /// </summary>
    /// <returns>Bytes written.</returns>
    Task<long> AppendAsync(string name, IReadOnlyList<ExchangeRecord> exchanges, IReadOnlyList<SessionRecord> sessions, CancellationToken cancellationToken);

    /// <summary>Every recording's summary.</summary>
    Task<IReadOnlyList<RecordingInfo>> ListAsync(CancellationToken cancellationToken);

    /// <summary>One recording's summary, or null when there is no such recording.</summary>
    Task<RecordingInfo?> GetAsync(string name, CancellationToken cancellationToken);

    /// <summary>The sessions of a recording (latest state of each).</summary>
    Task<IReadOnlyList<SessionRecord>> ReadSessionsAsync(string name, CancellationToken cancellationToken);

    /// <summary>
    /// The exchanges of a recording in the order they were appended. A record that cannot be read is yielded as an
    /// entry with <see cref="StoredExchange.Error"/> set (and no record), so a reader can skip and count it.
    /// </summary>
    IAsyncEnumerable<StoredExchange> ReadExchangesAsync(string name, CancellationToken cancellationToken);

    /// <summary>Deletes a recording and its data; false when it did not exist.</summary>
    Task<bool> DeleteAsync(string name, CancellationToken cancellationToken);
}

/// <summary>An exchange as read from a store: the record, or why it could not be read.</summary>
/// <param name="Position">Where it is in the store (a Redis stream id, or <c>line N</c> of a file).</param>
/// <param name="Record">The exchange; null when <paramref name="Error"/> is set.</param>
/// <param name="Error">Why the entry could not be read; null when it could.</param>
public readonly record struct StoredExchange(string Position, ExchangeRecord? Record, string? Error);

/// <summary>Rules for recording names, shared by every store and the admin API.</summary>
public static class RecordingNames
{
    /// <summary>Longest name accepted.</summary>
    public const int MaxLength = 128;

    /// <summary>
    /// Whether <paramref name="name"/> is a valid recording name: 1 to 128 characters of letters, digits, <c>-</c>,
    /// <c>_</c> and <c>.</c>, not starting with <c>.</c> (it becomes a file name and a Redis hash tag).
    /// </summary>
    public static bool IsValid(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > MaxLength || name[0] == '.')
        {
            return false;
        }

        foreach (var c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Throws when the name is invalid.</summary>
    /// <exception cref="ArgumentException">The name breaks <see cref="IsValid"/>'s rules.</exception>
    public static void Validate(string name)
    {
        if (!IsValid(name))
        {
            throw new ArgumentException($"'{name}' is not a valid recording name: use 1 to {MaxLength} letters, digits, '-', '_' or '.', not starting with '.'.", nameof(name));
        }
    }
}

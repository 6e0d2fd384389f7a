using Contracts.Recording;
using StackExchange.Redis;

namespace Replay.Sources;

/// <summary>
/// Opens recordings in Redis through the shared <see cref="RedisRecordingStore"/> (key layout <c>rec:{NAME}:x</c>
/// stream, <c>rec:{NAME}:s</c> sessions, <c>rec:{NAME}:meta</c>; see docs/recording.md). The source is a
/// <c>redis://[:password@]host:port[/db]</c> URL or a StackExchange.Redis connection string.
/// </summary>
internal static class RedisSource
{
    /// <summary>Connects and checks that Redis answers.</summary>
    /// <exception cref="InputException">The source is not a valid Redis address, or Redis does not answer.</exception>
    public static async Task<(IRecordingStore Store, string Description)> OpenAsync(string source, CancellationToken cancellationToken)
    {
        RedisRecordingStore store;
        try
        {
            store = await RedisRecordingStore.ConnectAsync(source).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ArgumentException ex)
        {
            throw new InputException($"--source '{source}': {ex.Message}", ex);
        }
        catch (RedisException ex)
        {
            throw new InputException($"--source '{source}': cannot connect to Redis ({Brief(ex.Message)}).", ex);
        }

        try
        {
            await store.ListAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (RedisException ex)
        {
            await store.DisposeAsync().ConfigureAwait(false);
            throw new InputException($"--source '{source}': Redis does not answer ({Brief(ex.Message)}).", ex);
        }

        return (store, $"Redis at {source}");
    }

    /// <summary>The first sentence of a StackExchange.Redis message (the rest is a multi-line diagnostic dump).</summary>
    private static string Brief(string message)
    {
        var end = message.IndexOf(". ", StringComparison.Ordinal);
        var line = message.IndexOf('\n', StringComparison.Ordinal);
        var cut = end < 0 ? line : line < 0 ? end : Math.Min(end, line);
        return cut > 0 ? message[..cut].TrimEnd('.', '\r') : message;
    }
}

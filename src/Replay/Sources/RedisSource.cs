using Contracts.Recording;

namespace Replay.Sources;

/// <summary>
/// Opens a recording in Redis. The store itself (<c>RedisRecordingStore</c>, key layout <c>rec:{NAME}:x</c>) lives in
/// src/Shared beside the file store; the replay tool reads it through <see cref="IRecordingStore"/> like any other.
/// </summary>
internal static class RedisSource
{
    /// <summary>Connects to Redis.</summary>
    /// <exception cref="InputException">Redis cannot be reached or this build has no Redis store.</exception>
    public static Task<(IRecordingStore Store, string Description)> OpenAsync(string source, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        throw new InputException($"--source '{source}': this build of the replay tool has no Redis recording store yet (src/Shared has no RedisRecordingStore); export the recording to the file store and use --source file:DIR.");
    }
}

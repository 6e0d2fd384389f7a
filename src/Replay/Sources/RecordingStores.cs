using Contracts.Recording;

namespace Replay.Sources;

/// <summary>Opens the recording store a <c>--source</c> names: <c>file:DIR</c> or a directory (file store), <c>redis://HOST:PORT</c> or a StackExchange.Redis connection string (Redis).</summary>
internal static class RecordingStores
{
    /// <summary>True when <paramref name="source"/> names a recording store rather than a trace or a template.</summary>
    public static bool IsStore(string source) =>
        !source.StartsWith("azure-llm:", StringComparison.OrdinalIgnoreCase)
        && !source.StartsWith("template:", StringComparison.OrdinalIgnoreCase);

    /// <summary>Opens the store.</summary>
    /// <exception cref="InputException">The source names no usable store (the message says why).</exception>
    public static async Task<(IRecordingStore Store, string Description)> OpenAsync(string source, CancellationToken cancellationToken)
    {
        if (source.StartsWith("redis://", StringComparison.OrdinalIgnoreCase) || source.StartsWith("rediss://", StringComparison.OrdinalIgnoreCase) || LooksLikeRedis(source))
        {
            return await RedisSource.OpenAsync(source, cancellationToken).ConfigureAwait(false);
        }

        var directory = source.StartsWith("file:", StringComparison.OrdinalIgnoreCase) ? source[5..] : source;
        if (directory.Length == 0)
        {
            throw new InputException("--source file: needs a directory, e.g. --source file:./recordings.");
        }

        if (!Directory.Exists(directory))
        {
            throw new InputException($"--source '{source}': the directory '{Path.GetFullPath(directory)}' does not exist (expected a file store directory of NAME.jsonl files, azure-llm:FILE, template:FILE or redis://HOST:PORT).");
        }

        return (new FileRecordingStore(directory), $"file store {Path.GetFullPath(directory)}");
    }

    /// <summary>A bare <c>host:port[,options]</c> connection string, as StackExchange.Redis takes it.</summary>
    private static bool LooksLikeRedis(string source)
    {
        if (Directory.Exists(source) || source.StartsWith("file:", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        var first = source.Split(',')[0];
        var colon = first.LastIndexOf(':');
        return colon > 0 && int.TryParse(first.AsSpan(colon + 1), out _) && !first.Contains('/', StringComparison.Ordinal);
    }
}

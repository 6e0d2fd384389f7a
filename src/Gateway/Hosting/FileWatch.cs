namespace Gateway.Hosting;

/// <summary>Watches one file for changes (a secret or key file the gateway re-reads when it changes).</summary>
internal static class FileWatch
{
    /// <summary>The changes every watch reports: written, resized, renamed, created.</summary>
    private const NotifyFilters Changes = NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.FileName | NotifyFilters.CreationTime;

    /// <summary>
    /// Starts watching <paramref name="file"/>: <paramref name="onChange"/> runs (on a thread-pool thread) when it is
    /// written, created or renamed, and also when it is deleted or its attributes change with
    /// <paramref name="deletionsAndAttributes"/> (a file made unreadable).
    /// </summary>
    /// <returns>The watcher (dispose it to stop), or null when the file's folder cannot be watched; callers then rely on re-reading it.</returns>
    public static FileSystemWatcher? TryWatch(string file, bool deletionsAndAttributes, Action onChange)
    {
        try
        {
            var path = Path.GetFullPath(file);
            var watcher = new FileSystemWatcher(Path.GetDirectoryName(path)!, Path.GetFileName(path))
            {
                NotifyFilter = deletionsAndAttributes ? Changes | NotifyFilters.Attributes : Changes,
            };
            FileSystemEventHandler changed = (_, _) => onChange();
            watcher.Changed += changed;
            watcher.Created += changed;
            watcher.Renamed += (_, _) => onChange();
            if (deletionsAndAttributes)
            {
                watcher.Deleted += changed;
            }

            watcher.EnableRaisingEvents = true;
            return watcher;
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            return null;
        }
    }
}

using System.Collections.Concurrent;
using System.Runtime.CompilerServices;

namespace Contracts.Recording;

/// <summary>
/// The embedded default store: one append-only JSON Lines file per recording (<c>{Directory}/{name}.jsonl</c>, in the
/// format of <see cref="RecordingFile"/>), the same schema as Redis, read the same way by the replay tool. Needs no
/// server. Thread-safe, and safe for several processes (gateways) appending to the same directory.
/// </summary>
public sealed class FileRecordingStore : IRecordingStore
{
    private readonly ConcurrentDictionary<string, Writer> _writers = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;

    /// <summary>Creates a store over <paramref name="directory"/> (created when missing).</summary>
    /// <param name="directory">Where the <c>.jsonl</c> files live.</param>
    /// <param name="time">Clock for state-change lines; <see cref="TimeProvider.System"/> when null.</param>
    public FileRecordingStore(string directory, TimeProvider? time = null)
    {
        Directory = Path.GetFullPath(directory);
        System.IO.Directory.CreateDirectory(Directory);
        _time = time ?? TimeProvider.System;
    }

    /// <summary>The directory of the files.</summary>
    public string Directory { get; }

    /// <inheritdoc/>
    public string Kind => "file";

    /// <summary>The file of a recording.</summary>
    /// <exception cref="ArgumentException">The name is not a valid recording name.</exception>
    public string PathOf(string name)
    {
        RecordingNames.Validate(name);
        return Path.Combine(Directory, name + ".jsonl");
    }

    /// <inheritdoc/>
    public Task StartAsync(string name, CancellationToken cancellationToken) =>
        AppendLinesAsync(name, [RecordingFile.StateLine(name, RecordingStates.Recording, NowMicros())], cancellationToken);

    /// <inheritdoc/>
    public Task StopAsync(string name, CancellationToken cancellationToken) =>
        AppendLinesAsync(name, [RecordingFile.StateLine(name, RecordingStates.Stopped, NowMicros())], cancellationToken);

    /// <inheritdoc/>
    public async Task<long> AppendAsync(string name, IReadOnlyList<ExchangeRecord> exchanges, IReadOnlyList<SessionRecord> sessions, CancellationToken cancellationToken)
    {
        var lines = new List<byte[]>(exchanges.Count + sessions.Count);
        long bytes = 0;
        foreach (var x in exchanges)
        {
            var line = RecordingFile.ExchangeLine(x);
            bytes += line.Length;
            lines.Add(line);
        }

        foreach (var s in sessions)
        {
            lines.Add(RecordingFile.SessionLine(s));
        }

        await AppendLinesAsync(name, lines, cancellationToken);
        return bytes;
    }

    /// <inheritdoc/>
    public async Task<IReadOnlyList<RecordingInfo>> ListAsync(CancellationToken cancellationToken)
    {
        var list = new List<RecordingInfo>();
        foreach (var file in System.IO.Directory.EnumerateFiles(Directory, "*.jsonl").Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileNameWithoutExtension(file);
            if (RecordingNames.IsValid(name) && await GetAsync(name, cancellationToken) is { } info)
            {
                list.Add(info);
            }
        }

        return list;
    }

    /// <inheritdoc/>
    public async Task<RecordingInfo?> GetAsync(string name, CancellationToken cancellationToken)
    {
        var path = PathOf(name);
        if (!File.Exists(path))
        {
            return null;
        }

        var c = await RecordingFile.ScanAsync(path, null, cancellationToken);
        return new RecordingInfo
        {
            Name = name,
            State = c.State,
            Count = c.Exchanges,
            Bytes = c.ExchangeBytes,
            Sessions = c.Sessions.Count,
            FirstUnixMicros = c.First,
            LastUnixMicros = c.Last,
            Store = Kind,
        };
    }

    /// <inheritdoc/>
    public async Task<IReadOnlyList<SessionRecord>> ReadSessionsAsync(string name, CancellationToken cancellationToken)
    {
        var path = PathOf(name);
        if (!File.Exists(path))
        {
            return [];
        }

        var c = await RecordingFile.ScanAsync(path, null, cancellationToken);
        return [.. c.Sessions.Values];
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<StoredExchange> ReadExchangesAsync(string name, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var path = PathOf(name);
        if (!File.Exists(path))
        {
            yield break;
        }

        await foreach (var x in RecordingFile.ReadExchangesAsync(path, cancellationToken))
        {
            yield return x;
        }
    }

    /// <inheritdoc/>
    public async Task<bool> DeleteAsync(string name, CancellationToken cancellationToken)
    {
        var path = PathOf(name);
        if (_writers.TryRemove(name, out var writer))
        {
            await writer.DisposeAsync();
        }

        if (!File.Exists(path))
        {
            return false;
        }

        File.Delete(path);
        return true;
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        foreach (var w in _writers.Values)
        {
            await w.DisposeAsync();
        }

        _writers.Clear();
    }

    private async Task AppendLinesAsync(string name, IReadOnlyList<byte[]> lines, CancellationToken cancellationToken)
    {
        var writer = _writers.GetOrAdd(name, static (n, self) => new Writer(self.PathOf(n)), this);
        await writer.AppendAsync(lines, cancellationToken);
    }

    private long NowMicros() => _time.GetUtcNow().ToUnixTimeMilliseconds() * 1000;

    /// <summary>
    /// Appends to one recording's file, one batch at a time, safely across processes: two gateways may share a file
    /// store. Each batch holds an exclusive lock on <c>NAME.jsonl.lock</c> (an advisory <c>flock</c>, which .NET takes for
    /// <see cref="FileShare.None"/>), opens the data file, writes at its current end and closes it, so batches of
    /// different writers never overwrite or interleave each other. Readers do not take the lock.
    /// </summary>
    private sealed class Writer(string path) : IAsyncDisposable
    {
        private static readonly TimeSpan s_lockWait = TimeSpan.FromSeconds(10);
        private readonly SemaphoreSlim _gate = new(1, 1);

        public async Task AppendAsync(IReadOnlyList<byte[]> lines, CancellationToken cancellationToken)
        {
            await _gate.WaitAsync(cancellationToken);
            try
            {
                await using var fileLock = await AcquireLockAsync(cancellationToken);
                await using var stream = new FileStream(path, new FileStreamOptions
                {
                    Mode = FileMode.Append,
                    Access = FileAccess.Write,
                    Share = FileShare.ReadWrite | FileShare.Delete,
                    Options = FileOptions.Asynchronous,
                    BufferSize = 1 << 16,
                });
                foreach (var line in lines)
                {
                    await stream.WriteAsync(line, cancellationToken);
                }

                await stream.FlushAsync(cancellationToken);
            }
            finally
            {
                _gate.Release();
            }
        }

        public ValueTask DisposeAsync()
        {
            _gate.Dispose();
            return ValueTask.CompletedTask;
        }

        private async Task<FileStream> AcquireLockAsync(CancellationToken cancellationToken)
        {
            var deadline = DateTime.UtcNow + s_lockWait;
            while (true)
            {
                try
                {
                    return new FileStream(path + ".lock", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
                }
                catch (IOException) when (DateTime.UtcNow < deadline)
                {
                    await Task.Delay(2, cancellationToken); // another writer holds the file for one batch
                }
            }
        }
    }
}

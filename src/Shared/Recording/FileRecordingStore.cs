using System.Collections.Concurrent;
using System.Runtime.CompilerServices;

namespace Contracts.Recording;

/// <summary>
/// The embedded default store: one append-only JSON Lines file per recording (<c>{Directory}/{name}.jsonl</c>, in the
/// format of <see cref="RecordingFile"/>), the same schema as Redis, read the same way by the replay tool. Needs no
/// server; suited to one gateway. Thread-safe; one writer per file within a process.
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

        await FlushAsync(name, cancellationToken);
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

        await FlushAsync(name, cancellationToken);
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

        await FlushAsync(name, cancellationToken);
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

    private async Task FlushAsync(string name, CancellationToken cancellationToken)
    {
        if (_writers.TryGetValue(name, out var writer))
        {
            await writer.FlushAsync(cancellationToken);
        }
    }

    private async Task AppendLinesAsync(string name, IReadOnlyList<byte[]> lines, CancellationToken cancellationToken)
    {
        var writer = _writers.GetOrAdd(name, static (n, self) => new Writer(self.PathOf(n)), this);
        await writer.AppendAsync(lines, cancellationToken);
    }

    private long NowMicros() => _time.GetUtcNow().ToUnixTimeMilliseconds() * 1000;

    /// <summary>An open append-only file, written by one caller at a time.</summary>
    private sealed class Writer(string path) : IAsyncDisposable
    {
        private readonly SemaphoreSlim _gate = new(1, 1);
        private FileStream? _stream;

        public async Task AppendAsync(IReadOnlyList<byte[]> lines, CancellationToken cancellationToken)
        {
            await _gate.WaitAsync(cancellationToken);
            try
            {
                _stream ??= new FileStream(path, new FileStreamOptions
                {
                    Mode = FileMode.Append,
                    Access = FileAccess.Write,
                    Share = FileShare.Read | FileShare.Delete,
                    Options = FileOptions.Asynchronous,
                    BufferSize = 1 << 16,
                });
                foreach (var line in lines)
                {
                    await _stream.WriteAsync(line, cancellationToken);
                }

                await _stream.FlushAsync(cancellationToken);
            }
            finally
            {
                _gate.Release();
            }
        }

        public async Task FlushAsync(CancellationToken cancellationToken)
        {
            await _gate.WaitAsync(cancellationToken);
            try
            {
                if (_stream is not null)
                {
                    await _stream.FlushAsync(cancellationToken);
                }
            }
            finally
            {
                _gate.Release();
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _gate.WaitAsync();
            try
            {
                if (_stream is not null)
                {
                    await _stream.DisposeAsync();
                    _stream = null;
                }
            }
            finally
            {
                _gate.Release();
            }
        }
    }
}

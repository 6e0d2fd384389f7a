using System.Text.Json;
using System.Threading.Channels;

namespace Replay.Measurement;

/// <summary>
/// <c>--log-requests FILE</c>: one JSON line per request (session, sequence, turn, route, intended/sent/first
/// token/end times in ms from the start, the latency exactly as recorded in the histograms in µs, status, failure
/// kind, tokens, error), for checking order and timing after a
/// run. Lines go through a bounded channel (<see cref="BoundedChannelFullMode.Wait"/>: a slow disk slows completions
/// rather than losing lines) to one writer task.
/// </summary>
internal sealed class RequestLog : IAsyncDisposable
{
    private readonly Channel<Entry> _channel = Channel.CreateBounded<Entry>(new BoundedChannelOptions(65_536)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.Wait,
    });

    private readonly Stream _stream;
    private readonly Task _writer;

    /// <summary>One request.</summary>
    internal readonly record struct Entry(string Session, int Sequence, int Turn, string Route, double IntendedMs, double SentMs, double FirstTokenMs, double EndMs, string Status, FailureKind Failure, int Tokens, string? Error, long LatencyMicros = -1);

    /// <summary>Opens <paramref name="path"/> (created or truncated).</summary>
    public RequestLog(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        var directory = System.IO.Path.GetDirectoryName(Path);
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }

        _stream = new FileStream(Path, FileMode.Create, FileAccess.Write, FileShare.Read, 1 << 16, useAsync: true);
        _writer = WriteAllAsync();
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>Queues an entry (waits only when 65,536 lines are pending).</summary>
    public ValueTask WriteAsync(Entry entry, CancellationToken cancellationToken) =>
        _channel.Writer.TryWrite(entry) ? ValueTask.CompletedTask : _channel.Writer.WriteAsync(entry, cancellationToken);

    /// <summary>Writes what is queued and closes the file.</summary>
    public async ValueTask DisposeAsync()
    {
        _channel.Writer.TryComplete();
        await _writer.ConfigureAwait(false);
        await _stream.DisposeAsync().ConfigureAwait(false);
    }

    private async Task WriteAllAsync()
    {
        await Task.Yield();
        using var json = new Utf8JsonWriter(_stream, new JsonWriterOptions { SkipValidation = true });
        var reader = _channel.Reader;
        while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
        {
            while (reader.TryRead(out var e))
            {
                json.WriteStartObject();
                json.WriteString("session", e.Session);
                json.WriteNumber("seq", e.Sequence);
                json.WriteNumber("turn", e.Turn);
                json.WriteString("route", e.Route);
                json.WriteNumber("intended_ms", Math.Round(e.IntendedMs, 3));
                json.WriteNumber("sent_ms", Math.Round(e.SentMs, 3));
                if (e.FirstTokenMs >= 0)
                {
                    json.WriteNumber("first_token_ms", Math.Round(e.FirstTokenMs, 3));
                }

                json.WriteNumber("end_ms", Math.Round(e.EndMs, 3));
                if (e.LatencyMicros >= 0)
                {
                    json.WriteNumber("latency_us", e.LatencyMicros);
                }

                json.WriteString("status", e.Status);
                json.WriteString("failure", e.Failure == FailureKind.None ? "none" : e.Failure.ToString().ToLowerInvariant());
                json.WriteNumber("tokens", e.Tokens);
                if (e.Error is not null)
                {
                    json.WriteString("error", e.Error);
                }

                json.WriteEndObject();
                json.Flush();
                _stream.WriteByte((byte)'\n');
                json.Reset();
            }

            await _stream.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }
}

namespace Contracts.Streams;

/// <summary>
/// A push parser of a <c>text/event-stream</c> body (WHATWG HTML §9.2.5 "Parsing an event stream" and §9.2.6 "Interpreting an
/// event stream"), fed arbitrary chunks as they arrive, for taps that see bytes flow past (a tee, not a buffer).
/// </summary>
/// <remarks>
/// <para>
/// What it follows from the spec: lines end with CRLF, LF or CR, and a CR that ends one chunk followed by an LF that begins
/// the next is one line end; a UTF-8 BOM at the very start is ignored; a line starting with <c>:</c> is a comment; the field
/// name is what precedes the first <c>:</c> and a single space after it is removed from the value; <c>data</c> values are
/// joined with LF; <c>event</c> sets the type; <c>id</c> (unless it contains NUL) sets the last event ID, which persists;
/// <c>retry</c> with ASCII digits only sets <see cref="RetryMilliseconds"/>; other fields are ignored; a blank line
/// dispatches the event unless its data buffer is empty; an incomplete event at the end of the stream is discarded.
/// The bytes are not decoded: CR and LF never occur inside a multi-byte UTF-8 sequence, so the reader splits lines on
/// bytes and hands out UTF-8 spans; invalid UTF-8 passes through as is.
/// </para>
/// <para>
/// Why not <c>System.Net.ServerSentEvents.SseParser</c>: it pulls from a <c>Stream</c> or <c>PipeReader</c> that it
/// owns, while the gateway's tap sees chunks pushed past it on the way to the client and must never read the stream itself.
/// </para>
/// <para>
/// Memory: the partial line carried between chunks and the event's joined data live in buffers rented from
/// <see cref="System.Buffers.ArrayPool{T}.Shared"/>, each bounded by <see cref="MaxEventBytes"/>; an event or line over
/// the bound is skipped (its bytes scanned for line ends, not kept) and counted. Nothing is allocated per chunk or per
/// event. <see cref="Dispose"/> returns the buffers; call it when the stream ends. Not thread-safe: one stream, one caller.
/// </para>
/// </remarks>
public sealed class SseEventReader : IDisposable
{
    /// <summary>The default of <see cref="MaxEventBytes"/>: 1 MiB.</summary>
    public const int DefaultMaxEventBytes = 1 << 20;

    private static ReadOnlySpan<byte> Bom => [0xEF, 0xBB, 0xBF];

    private PooledByteBuffer _line;
    private PooledByteBuffer _data;
    private PooledByteBuffer _eventType;
    private PooledByteBuffer _lastEventId;
    private bool _lineOversized;
    private bool _eventOversized;
    private bool _hasData;
    private bool _eventStarted;
    private bool _skipLf;
    private int _bomMatched;
    private bool _pastBom;
    private long _offset;
    private long _lineStart;
    private long _eventStart;
    private bool _disposed;

    /// <summary>Creates a reader.</summary>
    /// <param name="maxEventBytes">
    /// Largest event data (the joined <c>data:</c> values) and largest single line, in bytes; larger events are skipped and
    /// counted. At least 1; default <see cref="DefaultMaxEventBytes"/>.
    /// </param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxEventBytes"/> is less than 1.</exception>
    public SseEventReader(int maxEventBytes = DefaultMaxEventBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxEventBytes, 1);
        MaxEventBytes = maxEventBytes;
    }

    /// <summary>Largest event data and largest line held, in bytes.</summary>
    public int MaxEventBytes { get; }

    /// <summary>Bytes appended so far (the stream offset of the next byte).</summary>
    public long BytesConsumed => _offset;

    /// <summary>Events dispatched to <see cref="ISseHandler.OnEvent"/> so far.</summary>
    public long Events { get; private set; }

    /// <summary>Events skipped because they exceeded <see cref="MaxEventBytes"/>.</summary>
    public long SkippedEvents { get; private set; }

    /// <summary>The last <c>retry:</c> value seen (reconnection time, milliseconds), or -1 when none was.</summary>
    public long RetryMilliseconds { get; private set; } = -1;

    /// <summary>
    /// Whether the bytes so far end exactly between events (no partial line, no pending field): a stream that ends here
    /// lost nothing. False while an event is incomplete.
    /// </summary>
    public bool IsAtEventBoundary => _line.Length == 0 && !_lineOversized && !_eventStarted;

    /// <summary>
    /// Parses <paramref name="chunk"/> (any length, split anywhere, including inside a line end or a UTF-8 character) and
    /// calls <paramref name="handler"/> for each event it completes, in order, before returning.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The reader was disposed.</exception>
    public void Append(ReadOnlySpan<byte> chunk, ISseHandler handler)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(handler);
        if (!_pastBom)
        {
            chunk = SkipBom(chunk, handler);
        }

        Feed(chunk, handler);
    }

    /// <summary>Returns the pooled buffers. The reader cannot be used afterwards; an incomplete event is discarded (spec).</summary>
    public void Dispose()
    {
        _disposed = true;
        _line.Release();
        _data.Release();
        _eventType.Release();
        _lastEventId.Release();
    }

    private ReadOnlySpan<byte> SkipBom(ReadOnlySpan<byte> chunk, ISseHandler handler)
    {
        while (!chunk.IsEmpty && _bomMatched < 3)
        {
            if (chunk[0] != Bom[_bomMatched])
            {
                // Not a BOM: the bytes held back so far are ordinary data.
                _pastBom = true;
                var held = _bomMatched;
                _bomMatched = 0;
                Feed(Bom[..held], handler);
                return chunk;
            }

            _bomMatched++;
            chunk = chunk[1..];
        }

        if (_bomMatched == 3)
        {
            _pastBom = true;
            _offset = 3;
            _lineStart = 3;
        }

        return chunk;
    }

    private void Feed(ReadOnlySpan<byte> chunk, ISseHandler handler)
    {
        while (!chunk.IsEmpty)
        {
            if (_skipLf)
            {
                _skipLf = false;
                if (chunk[0] == (byte)'\n')
                {
                    chunk = chunk[1..];
                    _offset++;
                    _lineStart = _offset;
                    continue;
                }
            }

            var end = chunk.IndexOfAny((byte)'\r', (byte)'\n');
            if (end < 0)
            {
                Carry(chunk);
                _offset += chunk.Length;
                return;
            }

            ReadOnlySpan<byte> line;
            if (_line.Length == 0 && !_lineOversized)
            {
                line = chunk[..end];
            }
            else
            {
                Carry(chunk[..end]);
                line = _line.Span;
            }

            _skipLf = chunk[end] == (byte)'\r';
            _offset += end + 1;
            ProcessLine(line, handler);
            _line.Clear();
            _lineOversized = false;
            _lineStart = _offset;
            chunk = chunk[(end + 1)..];
        }
    }

    private void Carry(ReadOnlySpan<byte> part)
    {
        if (_lineOversized)
        {
            return;
        }

        if (!_line.TryAppend(part, MaxEventBytes))
        {
            _lineOversized = true;
            _line.Release();
        }
    }

    private void ProcessLine(ReadOnlySpan<byte> line, ISseHandler handler)
    {
        if (_lineOversized)
        {
            // A line we could not hold: whatever field it was, the event is lost.
            StartEvent();
            _eventOversized = true;
            return;
        }

        if (line.IsEmpty)
        {
            Dispatch(handler);
            return;
        }

        if (line[0] == (byte)':')
        {
            return; // comment
        }

        var colon = line.IndexOf((byte)':');
        ReadOnlySpan<byte> field, value;
        if (colon < 0)
        {
            field = line;
            value = default;
        }
        else
        {
            field = line[..colon];
            value = line[(colon + 1)..];
            if (!value.IsEmpty && value[0] == (byte)' ')
            {
                value = value[1..];
            }
        }

        if (field.SequenceEqual("data"u8))
        {
            StartEvent();
            _hasData = true;
            if (!_eventOversized && !(_data.TryAppend(value, MaxEventBytes) && _data.TryAppend((byte)'\n', MaxEventBytes + 1)))
            {
                _eventOversized = true;
                _data.Release();
            }
        }
        else if (field.SequenceEqual("event"u8))
        {
            StartEvent();
            _eventType.Clear();
            if (!_eventType.TryAppend(value, MaxEventBytes))
            {
                _eventOversized = true;
            }
        }
        else if (field.SequenceEqual("id"u8))
        {
            StartEvent();
            if (value.IndexOf((byte)0) < 0)
            {
                _lastEventId.Clear();
                _lastEventId.TryAppend(value, MaxEventBytes);
            }
        }
        else if (field.SequenceEqual("retry"u8))
        {
            StartEvent();
            if (!value.IsEmpty && value.IndexOfAnyExceptInRange((byte)'0', (byte)'9') < 0 && value.Length <= 18)
            {
                long ms = 0;
                foreach (var b in value)
                {
                    ms = (ms * 10) + (b - '0');
                }

                RetryMilliseconds = ms;
            }
        }
    }

    private void StartEvent()
    {
        if (!_eventStarted)
        {
            _eventStarted = true;
            _eventStart = _lineStart;
        }
    }

    private void Dispatch(ISseHandler handler)
    {
        try
        {
            if (_eventOversized)
            {
                SkippedEvents++;
                handler.OnEventSkipped(_eventStart, _offset);
            }
            else if (_hasData)
            {
                _data.TrimLast();
                Events++;
                handler.OnEvent(new SseEvent(_eventType.Span, _data.Span, _lastEventId.Span, _eventStart, _offset));
            }
        }
        finally
        {
            _data.Clear();
            _eventType.Clear();
            _hasData = false;
            _eventOversized = false;
            _eventStarted = false;
        }
    }
}

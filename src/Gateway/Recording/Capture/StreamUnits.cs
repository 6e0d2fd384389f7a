using System.Buffers;
using Contracts.Recording;
using Contracts.Streams;

namespace Gateway.Recording.Capture;

/// <summary>A stream unit as captured: direction, time offset (ticks of the exchange's clock), kind and payload (capped).</summary>
internal sealed record CapturedUnit(string Dir, long Timestamp, string Kind, byte[] Payload, int Length);

/// <summary>Collects the units of one exchange, up to a count and per-unit byte cap. Thread-safe (WebSocket directions run concurrently).</summary>
internal sealed class UnitCollector
{
    private readonly int _maxUnits;
    private readonly int _cap;
    private readonly TimeProvider _time;
    private readonly List<CapturedUnit> _units = [];
    private readonly Lock _lock = new();

    public UnitCollector(int maxUnits, int cap, TimeProvider time)
    {
        _maxUnits = maxUnits;
        _cap = cap;
        _time = time;
    }

    /// <summary>Units dropped because <c>MaxUnits</c> was reached.</summary>
    public int Dropped { get; private set; }

    /// <summary>Adds a unit whose payload is <paramref name="payload"/> (copied up to the cap) and whose full length is <paramref name="length"/>.</summary>
    public void Add(string dir, string kind, ReadOnlySpan<byte> payload, int length)
    {
        var copy = payload.Length > _cap ? payload[.._cap].ToArray() : payload.ToArray();
        var unit = new CapturedUnit(dir, _time.GetTimestamp(), kind, copy, length);
        lock (_lock)
        {
            if (_units.Count >= _maxUnits)
            {
                Dropped++;
                return;
            }

            _units.Add(unit);
        }
    }

    /// <summary>The units so far, in time order.</summary>
    public List<CapturedUnit> Snapshot()
    {
        lock (_lock)
        {
            return [.. _units];
        }
    }

    /// <summary>Per-unit byte cap.</summary>
    public int Cap => _cap;
}

/// <summary>
/// The SSE events of a response as capture units, read by the shared <see cref="SseEventReader"/> as the bytes pass.
/// A unit is the event written back in its canonical form: <c>event: TYPE</c> (when the event named one) and one
/// <c>data: LINE</c> per line of its data, joined with LF, without the blank line that ends it; comments, <c>id</c>
/// and <c>retry</c> lines are not kept. An event longer than the reader's bound keeps its length only.
/// </summary>
internal sealed class SseUnits : ISseHandler, IDisposable
{
    private readonly UnitCollector _units;
    private readonly SseEventReader _reader;
    private readonly ArrayBufferWriter<byte> _text = new(256);
    private readonly Lock _lock = new();
    private bool _disposed;

    public SseUnits(UnitCollector units)
    {
        _units = units;
        _reader = new SseEventReader(Math.Max(units.Cap, SseEventReader.DefaultMaxEventBytes));
    }

    public void Append(ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            if (!_disposed)
            {
                _reader.Append(data, this);
            }
        }
    }

    void ISseHandler.OnEvent(in SseEvent e)
    {
        _text.ResetWrittenCount();
        if (!e.EventType.IsEmpty)
        {
            _text.Write("event: "u8);
            _text.Write(e.EventType);
            _text.Write("\n"u8);
        }

        var data = e.Data;
        while (true)
        {
            var lf = data.IndexOf((byte)'\n');
            _text.Write("data: "u8);
            _text.Write(lf < 0 ? data : data[..lf]);
            if (lf < 0)
            {
                break;
            }

            _text.Write("\n"u8);
            data = data[(lf + 1)..];
        }

        _units.Add(Directions.ToClient, UnitKinds.Sse, _text.WrittenSpan, _text.WrittenCount);
        if (_text.Capacity > 64 * 1024)
        {
            _text.Clear(); // do not keep a large event's buffer zeroed and idle; the next event starts small
        }
    }

    void ISseHandler.OnEventSkipped(long startOffset, long endOffset) =>
        _units.Add(Directions.ToClient, UnitKinds.Sse, default, (int)Math.Min(endOffset - startOffset, int.MaxValue));

    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            _reader.Dispose();
        }
    }
}

/// <summary>
/// The gRPC messages of one direction as capture units (the payload, without its 5-byte prefix), read by the shared
/// <see cref="GrpcMessageReader"/>. A message longer than 1 MiB (or the unit cap, if larger) keeps its length only.
/// </summary>
internal sealed class GrpcUnits : IGrpcMessageHandler, IDisposable
{
    private readonly UnitCollector _units;
    private readonly string _dir;
    private readonly GrpcMessageReader _reader;
    private readonly Lock _lock = new();
    private bool _disposed;

    public GrpcUnits(UnitCollector units, string dir)
    {
        _units = units;
        _dir = dir;
        _reader = new GrpcMessageReader(Math.Max(units.Cap, 1 << 20));
    }

    public void Append(ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            if (!_disposed)
            {
                _reader.Append(data, this);
            }
        }
    }

    void IGrpcMessageHandler.OnMessage(in GrpcMessage message) => _units.Add(_dir, UnitKinds.Grpc, message.Payload, message.Payload.Length);

    void IGrpcMessageHandler.OnMessageSkipped(long length, bool isCompressed, long offset) =>
        _units.Add(_dir, UnitKinds.Grpc, default, (int)Math.Min(length, int.MaxValue));

    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            _reader.Dispose();
        }
    }
}

/// <summary>
/// The messages of one direction of an upgraded WebSocket connection as capture units, read by the shared
/// <see cref="WebSocketFrameReader"/> (client frames unmasked, fragments joined): text, binary and close (its text is
/// <c>"{status} {reason}"</c>, 1005 when the frame had no status); ping and pong are left out. Compressed messages
/// (permessage-deflate, RSV1) are kept as they are on the wire. A message longer than 1 MiB (or the unit cap, if
/// larger) keeps its length only.
/// </summary>
internal sealed class WebSocketUnits : IWebSocketFrameHandler, IDisposable
{
    private readonly UnitCollector _units;
    private readonly string _dir;
    private readonly WebSocketFrameReader _reader;
    private readonly Lock _lock = new();
    private bool _disposed;

    public WebSocketUnits(UnitCollector units, string dir)
    {
        _units = units;
        _dir = dir;
        _reader = new WebSocketFrameReader(Math.Max(units.Cap, WebSocketFrameReader.DefaultMaxMessageBytes));
    }

    public void Append(ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            if (!_disposed)
            {
                _reader.Append(data, this);
            }
        }
    }

    void IWebSocketFrameHandler.OnMessage(in WebSocketMessage message)
    {
        switch (message.Opcode)
        {
            case WebSocketOpcode.Text:
                _units.Add(_dir, UnitKinds.Text, message.Payload, message.Payload.Length);
                break;
            case WebSocketOpcode.Binary:
                _units.Add(_dir, UnitKinds.Binary, message.Payload, message.Payload.Length);
                break;
            case WebSocketOpcode.Close:
                // Status code, then the UTF-8 reason: "1000 bye" (1005, "no status received", RFC 6455 §7.4.1, when absent).
                Span<byte> text = stackalloc byte[6 + WebSocketFrameReader.MaxControlPayload];
                var status = message.CloseStatus < 0 ? 1005 : message.CloseStatus;
                status.TryFormat(text, out var n, provider: System.Globalization.CultureInfo.InvariantCulture);
                if (!message.CloseReason.IsEmpty)
                {
                    text[n++] = (byte)' ';
                    message.CloseReason.CopyTo(text[n..]);
                    n += message.CloseReason.Length;
                }

                _units.Add(_dir, UnitKinds.Close, text[..n], n);
                break;
        }
    }

    void IWebSocketFrameHandler.OnMessageSkipped(WebSocketOpcode opcode, long length, int frameCount) =>
        _units.Add(_dir, opcode == WebSocketOpcode.Text ? UnitKinds.Text : UnitKinds.Binary, default, (int)Math.Min(length, int.MaxValue));

    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            _reader.Dispose();
        }
    }
}

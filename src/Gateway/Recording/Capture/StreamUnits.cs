using System.Buffers.Binary;
using Contracts.Recording;

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
/// Cuts a <c>text/event-stream</c> into events as the bytes pass: an event ends at a blank line (WHATWG HTML,
/// "server-sent events", §9.2.6: lines end with LF, CR LF or CR; here LF and CR LF, which every LLM server emits).
/// </summary>
internal sealed class SseSplitter
{
    private readonly UnitCollector _units;
    private readonly byte[] _event;
    private int _count;
    private int _length;
    private int _lineLength;

    public SseSplitter(UnitCollector units)
    {
        _units = units;
        _event = new byte[Math.Max(256, units.Cap)];
    }

    public void Append(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            var nl = data.IndexOf((byte)'\n');
            var segment = nl < 0 ? data : data[..nl];
            var content = segment.Length > 0 && segment[^1] == (byte)'\r' ? segment.Length - 1 : segment.Length;
            if (nl < 0)
            {
                Keep(segment);
                _lineLength += content;
                return;
            }

            if (_lineLength + content == 0)
            {
                Emit();
            }
            else
            {
                Keep(data[..(nl + 1)]);
            }

            _lineLength = 0;
            data = data[(nl + 1)..];
        }
    }

    private void Keep(ReadOnlySpan<byte> bytes)
    {
        var room = _event.Length - _count;
        var keep = Math.Min(room, bytes.Length);
        bytes[..keep].CopyTo(_event.AsSpan(_count));
        _count += keep;
        _length += bytes.Length;
    }

    private void Emit()
    {
        if (_length == 0)
        {
            return; // blank lines between events
        }

        // The event's lines without the line break that ends the last one.
        var text = _event.AsSpan(0, _count);
        var trim = _length == _count ? TrailingBreak(text) : 0;
        _units.Add(Directions.ToClient, UnitKinds.Sse, text[..(text.Length - trim)], _length - trim);
        _count = 0;
        _length = 0;
    }

    private static int TrailingBreak(ReadOnlySpan<byte> text) =>
        text.EndsWith("\r\n"u8) ? 2 : text.EndsWith("\n"u8) ? 1 : 0;
}

/// <summary>
/// Cuts a gRPC body into messages as the bytes pass: each message is a 1-byte compressed flag, a 4-byte big-endian
/// length and the payload (gRPC over HTTP/2, "Length-Prefixed-Message"). The unit holds the payload.
/// </summary>
internal sealed class GrpcFramer
{
    private readonly UnitCollector _units;
    private readonly string _dir;
    private readonly byte[] _header = new byte[5];
    private int _headerCount;
    private byte[]? _payload;
    private int _payloadCount;
    private int _remaining;
    private int _messageLength;

    public GrpcFramer(UnitCollector units, string dir)
    {
        _units = units;
        _dir = dir;
    }

    public void Append(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            if (_headerCount < 5)
            {
                var take = Math.Min(5 - _headerCount, data.Length);
                data[..take].CopyTo(_header.AsSpan(_headerCount));
                _headerCount += take;
                data = data[take..];
                if (_headerCount < 5)
                {
                    return;
                }

                _messageLength = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(_header.AsSpan(1)), int.MaxValue);
                _remaining = _messageLength;
                _payload = new byte[Math.Min(_messageLength, _units.Cap)];
                _payloadCount = 0;
                if (_remaining == 0)
                {
                    Emit();
                    continue;
                }
            }

            var chunk = Math.Min(_remaining, data.Length);
            var keep = Math.Min(_payload!.Length - _payloadCount, chunk);
            data[..keep].CopyTo(_payload.AsSpan(_payloadCount));
            _payloadCount += keep;
            _remaining -= chunk;
            data = data[chunk..];
            if (_remaining == 0)
            {
                Emit();
            }
        }
    }

    private void Emit()
    {
        _units.Add(_dir, UnitKinds.Grpc, _payload.AsSpan(0, _payloadCount), _messageLength);
        _headerCount = 0;
        _payload = null;
    }
}

/// <summary>
/// Reads WebSocket frames (RFC 6455 §5.2) from one direction of an upgraded connection as the bytes pass, unmasking
/// client frames, joining fragments into messages, and recording text, binary and close messages as units (ping and
/// pong are left out). Compressed messages (permessage-deflate, RSV1) are kept as they are on the wire.
/// </summary>
internal sealed class WebSocketFrameReader
{
    private readonly UnitCollector _units;
    private readonly string _dir;
    private readonly byte[] _header = new byte[14];
    private int _headerCount;
    private int _headerNeeded = 2;
    private long _remaining;
    private int _maskIndex;
    private bool _masked;
    private int _opcode;
    private bool _fin;
    private int _messageOpcode;
    private byte[] _message = [];
    private int _messageCount;
    private long _messageLength;
    private byte[]? _control;
    private int _controlCount;

    public WebSocketFrameReader(UnitCollector units, string dir)
    {
        _units = units;
        _dir = dir;
    }

    public void Append(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            if (_headerCount < _headerNeeded)
            {
                var take = Math.Min(_headerNeeded - _headerCount, data.Length);
                data[..take].CopyTo(_header.AsSpan(_headerCount));
                _headerCount += take;
                data = data[take..];
                if (_headerCount < _headerNeeded)
                {
                    return;
                }

                if (_headerNeeded == 2)
                {
                    _masked = (_header[1] & 0x80) != 0;
                    var len7 = _header[1] & 0x7F;
                    _headerNeeded = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (_masked ? 4 : 0);
                    if (_headerCount < _headerNeeded)
                    {
                        continue;
                    }
                }

                StartFrame();
                if (_remaining == 0)
                {
                    EndFrame();
                }

                continue;
            }

            var chunk = (int)Math.Min(_remaining, data.Length);
            Payload(data[..chunk]);
            _remaining -= chunk;
            data = data[chunk..];
            if (_remaining == 0)
            {
                EndFrame();
            }
        }
    }

    private void StartFrame()
    {
        _fin = (_header[0] & 0x80) != 0;
        _opcode = _header[0] & 0x0F;
        var len7 = _header[1] & 0x7F;
        var offset = 2;
        _remaining = len7 switch
        {
            126 => BinaryPrimitives.ReadUInt16BigEndian(_header.AsSpan(2)),
            127 => (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(_header.AsSpan(2)), long.MaxValue),
            _ => len7,
        };
        offset += len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
        _maskIndex = 0;
        if (_masked)
        {
            _header.AsSpan(offset, 4).CopyTo(_header.AsSpan(10)); // keep the key at a fixed place
        }

        if (_opcode >= 8)
        {
            _control = new byte[(int)Math.Min(_remaining, 125)];
            _controlCount = 0;
        }
        else if (_opcode is 1 or 2)
        {
            _messageOpcode = _opcode;
            _messageCount = 0;
            _messageLength = 0;
        }
    }

    private void Payload(ReadOnlySpan<byte> data)
    {
        if (_opcode >= 8)
        {
            var keep = Math.Min(_control!.Length - _controlCount, data.Length);
            Unmask(data[..keep], _control.AsSpan(_controlCount));
            _controlCount += keep;
            _maskIndex += data.Length;
            return;
        }

        var room = _units.Cap - _messageCount;
        var copy = (int)Math.Min(room, data.Length);
        if (copy > 0)
        {
            if (_message.Length < _messageCount + copy)
            {
                Array.Resize(ref _message, Math.Min(_units.Cap, Math.Max(_messageCount + copy, Math.Max(256, _message.Length * 2))));
            }

            Unmask(data[..copy], _message.AsSpan(_messageCount));
            _messageCount += copy;
        }

        _maskIndex += data.Length;
        _messageLength += data.Length;
    }

    private void Unmask(ReadOnlySpan<byte> source, Span<byte> target)
    {
        source.CopyTo(target);
        if (!_masked)
        {
            return;
        }

        for (var i = 0; i < source.Length; i++)
        {
            target[i] ^= _header[10 + ((_maskIndex + i) & 3)];
        }
    }

    private void EndFrame()
    {
        if (_opcode == 8)
        {
            // Close: 2-byte status code, then a UTF-8 reason.
            var code = _controlCount >= 2 ? BinaryPrimitives.ReadUInt16BigEndian(_control) : 1005;
            var reason = _controlCount > 2 ? System.Text.Encoding.UTF8.GetString(_control.AsSpan(2, _controlCount - 2)) : string.Empty;
            var text = System.Text.Encoding.UTF8.GetBytes($"{code} {reason}".TrimEnd());
            _units.Add(_dir, UnitKinds.Close, text, text.Length);
        }
        else if (_opcode < 8 && _fin && _messageOpcode != 0)
        {
            _units.Add(_dir, _messageOpcode == 1 ? UnitKinds.Text : UnitKinds.Binary, _message.AsSpan(0, _messageCount), (int)Math.Min(_messageLength, int.MaxValue));
            _messageOpcode = 0;
            _messageCount = 0;
        }

        _headerCount = 0;
        _headerNeeded = 2;
        _control = null;
    }
}

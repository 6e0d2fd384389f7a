using System.Buffers.Binary;
using System.Text;
using Contracts.Streams;

namespace Contracts.Tests.Streams;

/// <summary>RFC 6455 frame reader, for every way the bytes can be cut.</summary>
public sealed class WebSocketFrameReaderTests
{
    private sealed class Collector : IWebSocketFrameHandler
    {
        public List<string> Seen { get; } = [];

        public void OnFrame(in WebSocketFrame f) => Seen.Add($"frame {f.Opcode} fin={f.Fin} rsv1={f.Rsv1} masked={f.IsMasked} len={f.PayloadLength} @{f.Offset}+{f.HeaderLength}");

        public void OnMessage(in WebSocketMessage m) => Seen.Add(m.Opcode == WebSocketOpcode.Close
            ? $"close {m.CloseStatus} '{Encoding.UTF8.GetString(m.CloseReason)}'"
            : $"message {m.Opcode} frames={m.FrameCount} compressed={m.IsCompressed} @{m.Offset}-{m.EndOffset} '{Describe(m.Payload)}'");

        public void OnMessageSkipped(WebSocketOpcode opcode, long length, int frameCount) => Seen.Add($"skipped {opcode} len={length} frames={frameCount}");

        private static string Describe(ReadOnlySpan<byte> p) => p.Length <= 64 ? Encoding.UTF8.GetString(p) : $"{p.Length} bytes, hash {Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(p))[..16]}";
    }

    /// <summary>Builds a frame the way RFC 6455 §5.2 draws it.</summary>
    private static byte[] Frame(WebSocketOpcode opcode, byte[] payload, bool fin = true, bool mask = false, bool rsv1 = false, int forceLengthBits = 0)
    {
        var header = new List<byte> { (byte)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (byte)opcode) };
        var m = mask ? 0x80 : 0;
        if (payload.Length < 126 && forceLengthBits == 0)
        {
            header.Add((byte)(m | payload.Length));
        }
        else if (payload.Length <= ushort.MaxValue && forceLengthBits != 64)
        {
            header.Add((byte)(m | 126));
            header.Add((byte)(payload.Length >> 8));
            header.Add((byte)payload.Length);
        }
        else
        {
            header.Add((byte)(m | 127));
            var l = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(l, (ulong)payload.Length);
            header.AddRange(l);
        }

        var body = (byte[])payload.Clone();
        if (mask)
        {
            byte[] key = [0x37, 0xFA, 0x21, 0x3D];
            header.AddRange(key);
            for (var i = 0; i < body.Length; i++)
            {
                body[i] ^= key[i % 4];
            }
        }

        return [.. header, .. body];
    }

    private static byte[] Close(int code, string reason, bool mask = false)
    {
        var r = Encoding.UTF8.GetBytes(reason);
        var p = new byte[2 + r.Length];
        BinaryPrimitives.WriteUInt16BigEndian(p, (ushort)code);
        r.CopyTo(p, 2);
        return Frame(WebSocketOpcode.Close, p, mask: mask);
    }

    private static (List<string> Seen, WebSocketFrameReader Reader) Run(byte[] bytes, int[] cuts, int max = WebSocketFrameReader.DefaultMaxMessageBytes)
    {
        var c = new Collector();
        var reader = new WebSocketFrameReader(max);
        Chunkings.Feed(bytes, cuts, chunk => reader.Append(chunk, c));
        reader.Dispose();
        return (c.Seen, reader);
    }

    private static void SameForEveryChunking(byte[] bytes, List<string> expected, int max = WebSocketFrameReader.DefaultMaxMessageBytes, int step = 1, params int[] interesting)
    {
        foreach (var (name, cuts) in Chunkings.Around(bytes.Length, step, interesting))
        {
            var (seen, _) = Run(bytes, cuts, max);
            Assert.True(expected.SequenceEqual(seen), $"{name}:\n{string.Join('\n', seen)}");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Fragments_with_interleaved_control_frames_masked_or_not(bool mask)
    {
        var bytes = new[]
        {
            Frame(WebSocketOpcode.Text, "Hel"u8.ToArray(), fin: false, mask: mask),
            Frame(WebSocketOpcode.Ping, "p1"u8.ToArray(), mask: mask),
            Frame(WebSocketOpcode.Continuation, Encoding.UTF8.GetBytes("lo, 漢"), fin: false, mask: mask),
            Frame(WebSocketOpcode.Pong, [], mask: mask),
            Frame(WebSocketOpcode.Continuation, Encoding.UTF8.GetBytes("😀!"), mask: mask),
            Frame(WebSocketOpcode.Binary, [1, 2, 3], mask: mask, rsv1: true),
            Close(1013, "queue_full: admission:model-http; retry after 1.5s", mask),
        }.SelectMany(f => f).ToArray();
        var (expected, reader) = Run(bytes, []);
        var h = mask ? 6 : 2;
        Assert.Equal($"frame Text fin=False rsv1=False masked={mask} len=3 @0+{h}", expected[0]);
        Assert.Equal("message Ping frames=1 compressed=False @" + (h + 3) + "-" + ((2 * h) + 5) + " 'p1'", expected[2]);
        Assert.Equal("message Text frames=3 compressed=False @0-" + ((5 * h) + 3 + 2 + 7 + 5) + " 'Hello, 漢😀!'", expected[7]);
        Assert.Equal("message Binary frames=1 compressed=True @" + ((5 * h) + 17) + "-" + ((6 * h) + 20) + " '\u0001\u0002\u0003'", expected[9]);
        Assert.Equal("close 1013 'queue_full: admission:model-http; retry after 1.5s'", expected[^1]);
        Assert.True(reader.CloseReceived);
        Assert.True(reader.IsAtMessageBoundary);
        Assert.Equal(7, reader.Frames);
        SameForEveryChunking(bytes, expected);
    }

    [Theory]
    [InlineData(200, 0, false)]   // 16-bit length
    [InlineData(40_000, 0, true)] // 16-bit length, 40 KB, masked
    [InlineData(70_000, 0, true)] // 64-bit length
    [InlineData(5, 64, false)]    // a small payload written with a 64-bit length (legal, non-minimal)
    public void Extended_lengths_split_inside_the_length_and_the_mask_key(int length, int bits, bool mask)
    {
        var payload = new byte[length];
        new Random(length).NextBytes(payload);
        var bytes = Frame(WebSocketOpcode.Binary, payload, mask: mask, forceLengthBits: bits).Concat(Frame(WebSocketOpcode.Text, "end"u8.ToArray(), mask: mask)).ToArray();
        var (expected, _) = Run(bytes, []);
        Assert.Equal(4, expected.Count);
        Assert.Contains($"len={length} ", expected[0], StringComparison.Ordinal);
        var original = Run(Frame(WebSocketOpcode.Binary, payload), []).Seen[1].Split(" '")[1];
        Assert.EndsWith(original, expected[1], StringComparison.Ordinal); // unmasked payload equals the original
        SameForEveryChunking(bytes, expected, step: length > 1000 ? 113 : 1, interesting: [1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15]);
    }

    [Fact]
    public void A_message_over_the_bound_is_skipped_across_fragments_and_the_next_is_read()
    {
        var bytes = new[]
        {
            Frame(WebSocketOpcode.Binary, new byte[60], fin: false, mask: true),
            Frame(WebSocketOpcode.Ping, "x"u8.ToArray(), mask: true),
            Frame(WebSocketOpcode.Continuation, new byte[60], mask: true), // 120 > 100 in total
            Frame(WebSocketOpcode.Binary, new byte[200], mask: true), // one frame over the bound
            Frame(WebSocketOpcode.Text, "ok"u8.ToArray(), mask: true),
        }.SelectMany(f => f).ToArray();
        var expected = Run(bytes, [], max: 100).Seen.Where(s => !s.StartsWith("frame", StringComparison.Ordinal)).ToList();
        Assert.Equal(["message Ping frames=1 compressed=False @66-73 'x'", "skipped Binary len=120 frames=2", "skipped Binary len=200 frames=1", $"message Text frames=1 compressed=False @{bytes.Length - 8}-{bytes.Length} 'ok'"], expected);
        foreach (var (name, cuts) in Chunkings.All(bytes.Length))
        {
            var (seen, reader) = Run(bytes, cuts, max: 100);
            Assert.True(expected.SequenceEqual(seen.Where(s => !s.StartsWith("frame", StringComparison.Ordinal))), name);
            Assert.Equal(2, reader.SkippedMessages);
        }
    }

    [Theory]
    [InlineData(new byte[] { 0x83, 0x00 }, WebSocketFrameError.ReservedOpcode)]
    [InlineData(new byte[] { 0x09, 0x00 }, WebSocketFrameError.InvalidControlFrame)] // ping without FIN
    [InlineData(new byte[] { 0x89, 0x7E, 0x00, 0x7E }, WebSocketFrameError.InvalidControlFrame)] // ping of 126 bytes
    [InlineData(new byte[] { 0x80, 0x00 }, WebSocketFrameError.UnexpectedContinuation)]
    [InlineData(new byte[] { 0x01, 0x00, 0x81, 0x00 }, WebSocketFrameError.UnexpectedContinuation)] // text inside text
    [InlineData(new byte[] { 0x88, 0x01, 0x03 }, WebSocketFrameError.InvalidClosePayload)]
    [InlineData(new byte[] { 0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0 }, WebSocketFrameError.InvalidLength)]
    public void Protocol_errors_stop_the_reader(byte[] bytes, WebSocketFrameError error)
    {
        foreach (var (name, cuts) in Chunkings.All(bytes.Length))
        {
            var (_, reader) = Run([.. bytes, 0x81, 0x00], cuts);
            Assert.True(error == reader.Error, name);
            Assert.False(reader.IsAtFrameBoundary);
        }
    }

    [Fact]
    public void A_close_without_a_body_has_no_status()
    {
        var (seen, _) = Run(Frame(WebSocketOpcode.Close, []), []);
        Assert.Equal("close -1 ''", seen[^1]);
    }

    [Fact]
    public void Unmasked_whole_frames_allocate_nothing()
    {
        var bytes = Frame(WebSocketOpcode.Text, new byte[300]).Concat(Frame(WebSocketOpcode.Ping, [1])).ToArray();
        var masked = Frame(WebSocketOpcode.Text, new byte[300], mask: true);
        using var reader = new WebSocketFrameReader();
        var handler = new Counting();
        reader.Append(bytes, handler);
        reader.Append(masked, handler);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            reader.Append(bytes, handler);
            reader.Append(masked.AsSpan(0, 3), handler);
            reader.Append(masked.AsSpan(3), handler);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(3003, handler.Count);
    }

    private sealed class Counting : IWebSocketFrameHandler
    {
        public int Count { get; private set; }

        public void OnMessage(in WebSocketMessage message) => Count++;
    }
}

using System.Buffers.Binary;
using Contracts.Streams;

namespace Contracts.Tests.Streams;

/// <summary>gRPC length-prefixed message reader, for every way the bytes can be cut.</summary>
public sealed class GrpcMessageReaderTests
{
    private sealed class Collector : IGrpcMessageHandler
    {
        public List<string> Seen { get; } = [];

        public void OnMessage(in GrpcMessage m) => Seen.Add($"@{m.Offset}-{m.EndOffset} c={m.IsCompressed} len={m.Payload.Length} sum={Sum(m.Payload)}");

        public void OnMessageSkipped(long length, bool isCompressed, long offset) => Seen.Add($"skipped @{offset} c={isCompressed} len={length}");

        private static long Sum(ReadOnlySpan<byte> p)
        {
            long s = 0;
            for (var i = 0; i < p.Length; i++)
            {
                s = (s * 31) + p[i];
            }

            return s;
        }
    }

    private static byte[] Message(int length, bool compressed, int seed)
    {
        var m = new byte[5 + length];
        m[0] = compressed ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(1), (uint)length);
        new Random(seed).NextBytes(m.AsSpan(5));
        return m;
    }

    private static (List<string> Seen, GrpcMessageReader Reader) Run(byte[] bytes, int[] cuts, int max = GrpcMessageReader.DefaultMaxMessageBytes)
    {
        var c = new Collector();
        var reader = new GrpcMessageReader(max);
        Chunkings.Feed(bytes, cuts, chunk => reader.Append(chunk, c));
        reader.Dispose();
        return (c.Seen, reader);
    }

    [Fact]
    public void Messages_split_anywhere_including_inside_the_prefix_are_the_same()
    {
        var bytes = Message(10, false, 1).Concat(Message(0, false, 2)).Concat(Message(300, true, 3)).Concat(Message(1, false, 4)).ToArray();
        var (expected, whole) = Run(bytes, []);
        Assert.Equal(["@0-15 c=False len=10 sum=" + expected[0].Split("sum=")[1], "@15-20 c=False len=0 sum=0"], expected[..2]);
        Assert.StartsWith("@20-325 c=True len=300", expected[2], StringComparison.Ordinal);
        Assert.StartsWith("@325-331 c=False len=1", expected[3], StringComparison.Ordinal);
        Assert.True(whole.IsAtMessageBoundary);
        foreach (var (name, cuts) in Chunkings.All(bytes.Length))
        {
            var (seen, reader) = Run(bytes, cuts);
            Assert.True(expected.SequenceEqual(seen), name + ": " + string.Join(" | ", seen));
            Assert.Equal(4, reader.Messages);
        }
    }

    [Fact]
    public void A_40_KB_message_and_an_oversize_one_for_every_chunking()
    {
        var bytes = Message(40_000, false, 5).Concat(Message(70_000, true, 6)).Concat(Message(3, false, 7)).ToArray();
        var (expected, _) = Run(bytes, [], max: 50_000);
        Assert.Equal(3, expected.Count);
        Assert.StartsWith("@0-40005 c=False len=40000", expected[0], StringComparison.Ordinal);
        Assert.Equal("skipped @40005 c=True len=70000", expected[1]);
        foreach (var (name, cuts) in Chunkings.Around(bytes.Length, 97, 40_005, 40_010, 110_010))
        {
            var (seen, reader) = Run(bytes, cuts, max: 50_000);
            Assert.True(expected.SequenceEqual(seen), name);
            Assert.Equal(1, reader.SkippedMessages);
        }
    }

    [Fact]
    public void A_truncated_body_is_not_at_a_boundary_and_a_bad_flag_faults()
    {
        var c = new Collector();
        using var reader = new GrpcMessageReader();
        reader.Append(Message(10, false, 1).AsSpan(0, 8), c);
        Assert.False(reader.IsAtMessageBoundary);
        Assert.Empty(c.Seen);

        using var bad = new GrpcMessageReader();
        var bytes = Message(2, false, 1);
        bytes[0] = 7;
        bad.Append(bytes.Concat(Message(2, false, 1)).ToArray(), c);
        Assert.True(bad.IsFaulted);
        Assert.Empty(c.Seen);
    }

    [Fact]
    public void Whole_messages_in_a_chunk_are_reported_without_allocating()
    {
        var bytes = Message(100, false, 1).Concat(Message(100, false, 2)).ToArray();
        using var reader = new GrpcMessageReader();
        var handler = new Counting();
        reader.Append(bytes, handler);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            reader.Append(bytes, handler);
            reader.Append(bytes.AsSpan(0, 3), handler);
            reader.Append(bytes.AsSpan(3), handler);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(4002, handler.Count);
    }

    private sealed class Counting : IGrpcMessageHandler
    {
        public int Count { get; private set; }

        public void OnMessage(in GrpcMessage message) => Count += message.Payload.Length == 100 ? 1 : 1000;
    }
}

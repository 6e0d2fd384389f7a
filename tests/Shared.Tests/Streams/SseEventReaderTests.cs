using System.Text;
using Contracts.Streams;

namespace Contracts.Tests.Streams;

/// <summary>SSE push reader: WHATWG HTML §9.2 parsing, for every way the bytes can be cut.</summary>
public sealed class SseEventReaderTests
{
    private sealed class Collector : ISseHandler
    {
        public List<string> Seen { get; } = [];

        public void OnEvent(in SseEvent e) =>
            Seen.Add($"[{e.StartOffset}-{e.EndOffset}] type={Encoding.UTF8.GetString(e.Type)} id={Encoding.UTF8.GetString(e.LastEventId)} data={Encoding.UTF8.GetString(e.Data)}");

        public void OnEventSkipped(long startOffset, long endOffset) => Seen.Add($"skipped [{startOffset}-{endOffset}]");
    }

    private static (List<string> Events, SseEventReader Reader) Run(byte[] bytes, int[] cuts, int max = SseEventReader.DefaultMaxEventBytes)
    {
        var c = new Collector();
        var reader = new SseEventReader(max);
        Chunkings.Feed(bytes, cuts, chunk => reader.Append(chunk, c));
        reader.Dispose();
        return (c.Seen, reader);
    }

    private static void SameForEveryChunking(byte[] bytes, IReadOnlyList<string> expected, int max = SseEventReader.DefaultMaxEventBytes, int step = 1, params int[] interesting)
    {
        foreach (var (name, cuts) in Chunkings.Around(bytes.Length, step, interesting))
        {
            var (events, _) = Run(bytes, cuts, max);
            Assert.True(expected.SequenceEqual(events), $"{name}: expected\n{string.Join('\n', expected)}\nbut got\n{string.Join('\n', events)}");
        }
    }

    [Fact]
    public void Spec_example_fields_comments_and_multiline_data_for_every_split()
    {
        var text = ": comment\n\ndata: first\ndata:second\ndata:  two spaces\n\nevent: delta\nid: 7\ndata: x\n\nfield-without-colon\ndata\n\nid: 8\nretry: 3000\nbogus: y\ndata: é漢😀\n\n";
        var bytes = Encoding.UTF8.GetBytes(text);
        var firstEventStart = ": comment\n\n".Length;
        SameForEveryChunking(bytes,
        [
            $"[{firstEventStart}-54] type=message id= data=first\nsecond\n two spaces",
            "[54-82] type=delta id=7 data=x",
            "[102-108] type=message id=7 data=", // an unknown field does not start an event
            $"[108-{bytes.Length}] type=message id=8 data=é漢😀",
        ]);
        Assert.Equal(3000, Run(bytes, []).Reader.RetryMilliseconds);
    }

    [Theory]
    [InlineData("\n")]
    [InlineData("\r\n")]
    [InlineData("\r")]
    public void Line_ends_LF_CRLF_and_CR_give_the_same_events(string eol)
    {
        var text = $"data: a{eol}data: b{eol}{eol}event: e{eol}data: {{\"n\": 12345}}{eol}{eol}";
        var bytes = Encoding.UTF8.GetBytes(text);
        var (events, _) = Run(bytes, []);
        Assert.Equal(2, events.Count);
        Assert.EndsWith("type=message id= data=a\nb", events[0], StringComparison.Ordinal);
        Assert.EndsWith("type=e id= data={\"n\": 12345}", events[1], StringComparison.Ordinal);
        SameForEveryChunking(bytes, events);
    }

    [Fact]
    public void A_CR_ending_one_chunk_and_an_LF_starting_the_next_are_one_line_end()
    {
        // If CR and LF were two line ends, the LF would be a blank line and dispatch "a" early, and "b" would be a second event.
        var bytes = "data: a\r"u8.ToArray().Concat("\ndata: b\r\n\r\n"u8.ToArray()).ToArray();
        var (events, _) = Run(bytes, [8]);
        // Dispatched at the CR of the blank line (its LF has not been seen yet): the end offset is past the CR.
        Assert.Equal([$"[0-{bytes.Length - 1}] type=message id= data=a\nb"], events);
    }

    [Fact]
    public void Split_inside_the_blank_line_ending_an_event_and_inside_a_multibyte_character()
    {
        var bytes = Encoding.UTF8.GetBytes("data: {\"choices\":[{\"delta\":{\"content\":\"漢😀\"}}]}\r\n\r\ndata: [DONE]\r\n\r\n");
        var blank = Encoding.UTF8.GetBytes("data: {\"choices\":[{\"delta\":{\"content\":\"漢😀\"}}]}\r\n").Length;
        var emoji = Encoding.UTF8.GetBytes("data: {\"choices\":[{\"delta\":{\"content\":\"漢").Length;
        var (expected, _) = Run(bytes, []);
        Assert.Equal(2, expected.Count);
        SameForEveryChunking(bytes, expected, interesting: [blank, blank + 1, emoji + 1, emoji + 2]);
    }

    [Fact]
    public void A_BOM_at_the_start_is_ignored_even_when_split_and_a_partial_BOM_is_data()
    {
        var bytes = new byte[] { 0xEF, 0xBB, 0xBF }.Concat("data: x\n\n"u8.ToArray()).ToArray();
        SameForEveryChunking(bytes, [$"[3-{bytes.Length}] type=message id= data=x"]);

        // A BOM only at the start: a second one is part of the field name, so the line is an unknown field.
        var twice = new byte[] { 0xEF, 0xBB, 0xBF, 0xEF, 0xBB, 0xBF }.Concat("data: x\n\ndata: y\n\n"u8.ToArray()).ToArray();
        SameForEveryChunking(twice, [$"[15-{twice.Length}] type=message id= data=y"]);
    }

    [Fact]
    public void An_incomplete_event_at_the_end_is_not_dispatched()
    {
        var bytes = "data: a\n\ndata: b\n"u8.ToArray();
        var c = new Collector();
        using var reader = new SseEventReader();
        reader.Append(bytes, c);
        Assert.Single(c.Seen);
        Assert.False(reader.IsAtEventBoundary);
        reader.Append("\n"u8, c);
        Assert.Equal(2, c.Seen.Count);
        Assert.True(reader.IsAtEventBoundary);
    }

    [Fact]
    public void A_40_KB_event_is_whole_for_every_chunking()
    {
        var payload = string.Concat(Enumerable.Range(0, 4000).Select(i => $"tok{i % 10}漢é ")); // multi-byte characters throughout
        var bytes = Encoding.UTF8.GetBytes($"data: {payload}\n\ndata: {payload[..100]}\ndata: tail\n\n");
        Assert.True(bytes.Length > 40_000);
        var (expected, _) = Run(bytes, []);
        Assert.Equal(2, expected.Count);
        Assert.EndsWith("data=" + payload, expected[0], StringComparison.Ordinal);
        SameForEveryChunking(bytes, expected, step: 101, interesting: [Encoding.UTF8.GetByteCount($"data: {payload}\n")]);
    }

    [Fact]
    public void An_event_over_the_bound_is_skipped_and_counted_and_the_next_is_read()
    {
        var big = new string('x', 300);
        var bytes = Encoding.UTF8.GetBytes($"data: ok\n\ndata: {big}\n\ndata: {big[..150]}\ndata: {big[..150]}\n\ndata: after\n\n");
        var bigEnd = 10 + 6 + 300 + 2;
        var twoEnd = bigEnd + ((6 + 150 + 1) * 2) + 1;
        foreach (var (name, cuts) in Chunkings.All(bytes.Length))
        {
            var (events, reader) = Run(bytes, cuts, max: 256);
            Assert.True(new[]
            {
                "[0-10] type=message id= data=ok",
                $"skipped [10-{bigEnd}]",
                $"skipped [{bigEnd}-{twoEnd}]",
                $"[{twoEnd}-{bytes.Length}] type=message id= data=after",
            }.SequenceEqual(events), name + ": " + string.Join(" | ", events));
            Assert.Equal(2, reader.SkippedEvents);
            Assert.Equal(2, reader.Events);
        }
    }

    [Fact]
    public void Memory_stays_bounded_on_an_endless_line()
    {
        using var reader = new SseEventReader(1024);
        var c = new Collector();
        var chunk = new byte[64 * 1024];
        chunk.AsSpan().Fill((byte)'a');
        reader.Append("data: "u8, c);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 200; i++)
        {
            reader.Append(chunk, c); // 12.8 MB without a line end
        }

        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 * 1024, "allocated while skipping");
        reader.Append("\n\ndata: z\n\n"u8, c);
        Assert.Equal(["skipped [0-13107208]", "[13107208-13107217] type=message id= data=z"], c.Seen);
    }

    [Fact]
    public void Steady_state_appends_allocate_nothing()
    {
        using var reader = new SseEventReader();
        var handler = new CountingHandler();
        var bytes = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\r\n\r\n"u8.ToArray();
        reader.Append(bytes, handler);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            reader.Append(bytes.AsSpan(0, 17), handler);
            reader.Append(bytes.AsSpan(17), handler);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(1001, handler.Count);
    }

    [Fact]
    public void Use_after_dispose_throws()
    {
        var reader = new SseEventReader();
        reader.Dispose();
        Assert.Throws<ObjectDisposedException>(() => reader.Append("data: x\n\n"u8, new CountingHandler()));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SseEventReader(0));
    }

    private sealed class CountingHandler : ISseHandler
    {
        public int Count { get; private set; }

        public void OnEvent(in SseEvent e) => Count += e.Data.IsEmpty ? 0 : 1;
    }
}

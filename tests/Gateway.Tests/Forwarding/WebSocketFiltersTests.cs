using Contracts.Streams;
using Contracts.Wire;
using Gateway.Forwarding;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// The WebSocket filters' parts, without sockets: the close frames the gateway writes, the frame-boundary follower built
/// on the shared <see cref="WebSocketFrameReader"/>, and the idle timeout on a fake clock (issue 11).
/// </summary>
public sealed class WebSocketFiltersTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_close_frame_reads_back_with_its_status_and_reason_masked_or_not(bool masked)
    {
        var reason = GatewayCloseReasons.IdleTimeout(TimeSpan.FromSeconds(30));
        var frame = WebSocketCloseFrame.Create(GatewayCloseReason.GoingAway, reason, masked);

        var handler = new Collect();
        using var reader = new WebSocketFrameReader();
        reader.Append(frame, handler);

        Assert.Equal(WebSocketFrameError.None, reader.Error);
        Assert.True(reader.CloseReceived);
        Assert.Equal(masked, handler.Frames.Single().IsMasked);
        Assert.Equal((1001, reason), handler.Closes.Single());
        Assert.Equal("idle_timeout: Gateway:Limits:WebSocketIdleTimeout 00:00:30", reason);
    }

    [Fact]
    public void A_close_reason_too_long_for_a_control_frame_is_cut_on_a_character_boundary()
    {
        var frame = WebSocketCloseFrame.Create(GatewayCloseReason.PolicyViolation, new string('漢', 100), masked: false);

        Assert.True(frame.Length <= 2 + 125);
        var handler = new Collect();
        using var reader = new WebSocketFrameReader();
        reader.Append(frame, handler);
        Assert.Equal(WebSocketFrameError.None, reader.Error);
        Assert.DoesNotContain('\uFFFD', handler.Closes.Single().Reason);
    }

    [Fact]
    public void The_boundary_follower_sees_every_frame_start_whatever_the_split_and_cuts_before_a_refused_one()
    {
        // Three client frames (masked): text, ping, text. The second text is refused: the bytes before it pass.
        var stream = Concat(Frame(0x81, "one"u8), Frame(0x89, "p"u8), Frame(0x81, "two"u8));
        var secondTextAt = Frame(0x81, "one"u8).Length + Frame(0x89, "p"u8).Length;
        for (var split = 0; split <= stream.Length; split++)
        {
            using var boundaries = new WebSocketFrameBoundaries();
            var texts = 0;
            bool Admit(byte first) => (first & 0x0F) != 1 || ++texts <= 1;
            var passed = boundaries.Advance(stream.AsMemory(0, split), Admit);
            if (passed == split)
            {
                passed += boundaries.Advance(stream.AsMemory(split), Admit);
            }

            Assert.Equal(secondTextAt, passed);
        }
    }

    [Fact]
    public async Task An_idle_connection_gets_1001_both_ways_on_the_fake_clock_and_activity_postpones_it()
    {
        var time = new FakeTimeProvider();
        var client = new FakeConnection();
        var closes = 0;
        await using var stream = new WebSocketIdleTimeout.IdleStream(client, TimeSpan.FromSeconds(30), time, () => closes++);

        var buffer = new byte[1024];
        var pendingRead = stream.ReadAsync(buffer).AsTask(); // YARP waits for the client's next frame
        time.Advance(TimeSpan.FromSeconds(29));
        await stream.WriteAsync(Frame(0x81, "token"u8, masked: false)); // the backend speaks: activity
        time.Advance(TimeSpan.FromSeconds(29)); // 58 s since start, 29 s since the last byte
        Assert.False(pendingRead.IsCompleted);
        Assert.Equal(0, closes);

        time.Advance(TimeSpan.FromSeconds(1)); // 30 s of silence
        var n = await pendingRead.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(1, closes);

        // YARP gets a masked close frame for the backend, then the end of the client's stream.
        var toBackend = new Collect();
        using (var reader = new WebSocketFrameReader())
        {
            reader.Append(buffer.AsSpan(0, n), toBackend);
        }

        Assert.True(toBackend.Frames.Single().IsMasked);
        Assert.Equal((1001, GatewayCloseReasons.IdleTimeout(TimeSpan.FromSeconds(30))), toBackend.Closes.Single());
        Assert.Equal(0, await stream.ReadAsync(new byte[1]));
        Assert.Equal(0, await stream.ReadAsync(buffer));

        // The client got the backend's frame, then an unmasked close frame; the backend's answering close is not passed on.
        await stream.WriteAsync(Frame(0x88, [0x03, 0xE8], masked: false));
        var toClient = new Collect();
        using (var reader = new WebSocketFrameReader())
        {
            reader.Append(client.Written.ToArray(), toClient);
        }

        Assert.Equal(2, toClient.Frames.Count);
        Assert.False(toClient.Frames[1].IsMasked);
        Assert.Equal((1001, GatewayCloseReasons.IdleTimeout(TimeSpan.FromSeconds(30))), toClient.Closes.Single());
    }

    [Fact]
    public async Task A_connection_that_ended_by_itself_is_never_reported_idle_later()
    {
        var time = new FakeTimeProvider();
        var client = new FakeConnection { Ended = true };
        var closes = 0;
        await using var stream = new WebSocketIdleTimeout.IdleStream(client, TimeSpan.FromSeconds(30), time, () => closes++);

        Assert.Equal(0, await stream.ReadAsync(new byte[16])); // the client's end of stream
        time.Advance(TimeSpan.FromMinutes(5));

        Assert.Equal(0, closes);
        Assert.False(stream.ClosedIdle);
        Assert.Equal(0, client.Written.Length);
    }

    private static byte[] Frame(byte first, ReadOnlySpan<byte> payload, bool masked = true)
    {
        var frame = new byte[2 + (masked ? 4 : 0) + payload.Length];
        frame[0] = first;
        frame[1] = (byte)((masked ? 0x80 : 0) | payload.Length);
        var at = 2;
        if (masked)
        {
            byte[] key = [1, 2, 3, 4];
            key.CopyTo(frame, 2);
            at = 6;
            for (var i = 0; i < payload.Length; i++)
            {
                frame[at + i] = (byte)(payload[i] ^ key[i & 3]);
            }
        }
        else
        {
            payload.CopyTo(frame.AsSpan(at));
        }

        return frame;
    }

    private static byte[] Concat(params byte[][] parts) => [.. parts.SelectMany(p => p)];

    private sealed class Collect : IWebSocketFrameHandler
    {
        public List<WebSocketFrame> Frames { get; } = [];

        public List<(int Status, string Reason)> Closes { get; } = [];

        public void OnFrame(in WebSocketFrame frame) => Frames.Add(frame);

        public void OnMessage(in WebSocketMessage message)
        {
            if (message.Opcode == WebSocketOpcode.Close)
            {
                Closes.Add((message.CloseStatus, System.Text.Encoding.UTF8.GetString(message.CloseReason)));
            }
        }
    }

    /// <summary>The client's side of an upgraded connection: reads wait (until cancelled), writes are kept.</summary>
    private sealed class FakeConnection : Stream
    {
        public MemoryStream Written { get; } = new();

        /// <summary>When true, reads return the end of the stream at once.</summary>
        public bool Ended { get; init; }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (!Ended)
            {
                await Task.Delay(Timeout.InfiniteTimeSpan, cancellationToken);
            }

            return 0;
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Written.Write(buffer.Span);
            return ValueTask.CompletedTask;
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => Written.Write(buffer, offset, count);
    }
}

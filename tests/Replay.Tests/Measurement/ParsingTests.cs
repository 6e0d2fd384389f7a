using System.Text;
using Replay.Clients;
using Replay.Measurement;
using Replay.Reporting;

namespace Replay.Tests.Measurement;

public sealed class ParsingTests
{
    [Theory]
    [InlineData("ttft_p95<500ms", "Ttft", 95, 500_000, false)]
    [InlineData("e2e_p99<=2s", "E2e", 99, 2_000_000, true)]
    [InlineData("itl<50ms", "Itl", 100, 50_000, false)]
    [InlineData("latency_p90.5 < 250 us", "E2e", 90.5, 250, false)]
    public void Slos_parse(string text, string metric, double percentile, long micros, bool inclusive)
    {
        var slo = Slo.TryParse(text, out var error);
        Assert.Null(error);
        Assert.Equal(Enum.Parse<SloMetric>(metric), slo!.Metric);
        Assert.Equal(percentile, slo.Percentile);
        Assert.Equal(micros, slo.ThresholdMicros);
        Assert.Equal(inclusive, slo.Inclusive);
    }

    [Theory]
    [InlineData("p95<500ms", "p95", "<", 500)]
    [InlineData("error_rate<1%", "error_rate", "<", 0.01)]
    [InlineData("achieved_rps>=1500", "achieved_rps", ">=", 1500)]
    [InlineData("ttft_p99 <= 2s", "ttft_p99", "<=", 2000)]
    [InlineData("lag_p99<500us", "lag_p99", "<", 0.5)]
    public void Assertions_parse_into_milliseconds_and_fractions(string text, string metric, string op, double value)
    {
        var a = Assertion.TryParse(text, out var error);
        Assert.Null(error);
        Assert.Equal(metric, a!.Metric);
        Assert.Equal(op, a.Operator);
        Assert.Equal(value, a.Value, 9);
    }

    [Theory]
    [InlineData("p95<500")]
    [InlineData("nonsense<5")]
    [InlineData("requests<5ms")]
    [InlineData("p95")]
    public void Malformed_assertions_are_refused_naming_the_flag(string text)
    {
        Assert.Null(Assertion.TryParse(text, out var error));
        Assert.StartsWith("--assert", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(4096)]
    public async Task Sse_events_with_text_count_as_tokens_however_spaced_or_split_and_usage_is_read(int chunk)
    {
        var body = Encoding.UTF8.GetBytes(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n" // empty content: no token
            + "data: {\"choices\": [{\"delta\": {\"content\": \" hi\"}}]}\r\n\r\n" // spaced, CRLF
            + "data:{\"choices\":[{\"index\":0,\"text\":\"x\"}]}\n\n" // legacy text, no space after the colon
            + ": a comment\n\n"
            + "data: not json\n\n" // unparseable
            + "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"total_tokens\":10,\"completion_tokens\": 7}}\n\n"
            + "data: [DONE]\n\n");
        var tokens = new TokenTimes();
        var sse = await Replay.Clients.Readers.SseResponseReader.ReadAsync(new TrickleStream(body, chunk), tokens, captureText: true, TimeProvider.System, CancellationToken.None);

        Assert.Equal(2, sse.TokenEvents);
        Assert.Equal(2, tokens.Count);
        Assert.Equal(7, sse.CompletionTokens);
        Assert.Equal(1, sse.Unparseable);
        Assert.Equal("not json", sse.FirstUnparseable);
        Assert.Equal(" hix", sse.Text);
    }

    /// <summary>A body handed out <c>chunk</c> bytes per read, as a slow network would.</summary>
    private sealed class TrickleStream(byte[] data, int chunk) : MemoryStream(data)
    {
        public override int Read(byte[] buffer, int offset, int count) => base.Read(buffer, offset, Math.Min(count, chunk));

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            base.ReadAsync(buffer[..Math.Min(buffer.Length, chunk)], cancellationToken);
    }

    [Fact]
    public void The_tokens_field_of_a_protobuf_reply_is_read()
    {
        var reply = new Inference.V1.GenerateReply { Text = "a b c", Tokens = 300 };
        Assert.Equal(300, Replay.Clients.Readers.GrpcResponseReader.ReadVarintField(Google.Protobuf.MessageExtensions.ToByteArray(reply), 2));
    }
}

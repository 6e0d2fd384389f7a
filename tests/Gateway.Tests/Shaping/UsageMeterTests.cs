using System.Text;
using Gateway.Shaping.Tokens;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Gateway.Tests.Shaping;

/// <summary>
/// The usage meter on the shared parsers (issue 11, item 5): usage read with a JSON reader from SSE events and JSON
/// answers, and, when the gateway asked for usage the client did not, every usage removed from what the client sees.
/// </summary>
public sealed class UsageMeterTests
{
    private const string Stream =
        "event: delta\nid: 7\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1,\"total_tokens\":5}}\n\n" +
        ": keep-alive\n\n" +
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\\n\"}}], \"usage\": {\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6}}\r\n\r\n" +
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"c\"}}],\"usage\":null}\n\n" +
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":3,\"total_tokens\":7}}\n\n" +
        "data: [DONE]\n\n";

    /// <summary>
    /// Issue 11 edge: "when the client did not ask for usage on a stream, running-total usage fields the backend puts on
    /// content chunks are removed too, not only usage-only chunks". vLLM did exactly this (vllm-project/vllm#7262: usage
    /// on every chunk); hiding the usage a gateway asked for is volcano-sh/kthena#202.
    /// </summary>
    [Theory]
    [InlineData(0)] // the whole stream in one write
    [InlineData(1)] // one byte per write: split inside every line end, field and UTF-8 sequence
    [InlineData(7)]
    [InlineData(64)]
    public async Task Running_total_usage_on_content_chunks_is_removed_with_the_event_fields_kept(int writeSize)
    {
        var (output, meter) = await RunAsync(Stream, stripUsage: true, writeSize);

        Assert.Equal(
            "event: delta\nid: 7\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n" +
            ": keep-alive\n\n" +
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\\n\"}}]}\r\n\r\n" +
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"c\"}}]}\n\n" +
            "data: [DONE]\n\n",
            output);
        Assert.Equal((4, 3, 3), (meter.PromptTokens, meter.CompletionTokens, meter.Delivered));
    }

    [Fact]
    public async Task Without_stripping_every_byte_passes_at_once_and_usage_is_read_on_the_side()
    {
        var body = new MemoryStream();
        var context = new DefaultHttpContext();
        context.Response.ContentType = "text/event-stream";
        using var meter = new UsageMeter(context, new StreamResponseBodyFeature(body), stripUsage: false, TimeProvider.System);

        var bytes = Encoding.UTF8.GetBytes(Stream);
        for (var i = 0; i < bytes.Length; i += 5)
        {
            var chunk = bytes.AsMemory(i, Math.Min(5, bytes.Length - i));
            await meter.Stream.WriteAsync(chunk);
            Assert.Equal(i + chunk.Length, body.Length); // a token reaches the client as soon as it is written
        }

        Assert.Equal(Stream, Encoding.UTF8.GetString(body.ToArray()));
        Assert.Equal((4, 3, 3), (meter.PromptTokens, meter.CompletionTokens, meter.Delivered));
    }

    [Fact]
    public async Task A_json_answer_s_usage_is_read_with_a_json_reader_whatever_its_spacing_and_order()
    {
        const string answer = "{ \"usage\" : { \"completion_tokens\" : 9 ,\n \"prompt_tokens\" : 11 } , \"choices\" : [ ] }";
        var (output, meter) = await RunAsync(answer, stripUsage: false, writeSize: 3, contentType: "application/json");

        meter.Finish();
        Assert.Equal(answer, output);
        Assert.Equal((11, 9), (meter.PromptTokens, meter.CompletionTokens));
    }

    [Fact]
    public async Task An_unterminated_last_event_is_forwarded_as_it_is_when_the_response_completes()
    {
        var (output, _) = await RunAsync("data: {\"choices\":[]}\n\ndata: {\"cho", stripUsage: true, writeSize: 0);

        Assert.Equal("data: {\"choices\":[]}\n\ndata: {\"cho", output);
    }

    private static async Task<(string Output, UsageMeter Meter)> RunAsync(string text, bool stripUsage, int writeSize, string contentType = "text/event-stream")
    {
        var body = new MemoryStream();
        var context = new DefaultHttpContext();
        context.Response.ContentType = contentType;
        var meter = new UsageMeter(context, new StreamResponseBodyFeature(body), stripUsage, TimeProvider.System);
        var bytes = Encoding.UTF8.GetBytes(text);
        var size = writeSize == 0 ? bytes.Length : writeSize;
        for (var i = 0; i < bytes.Length; i += size)
        {
            await meter.Stream.WriteAsync(bytes.AsMemory(i, Math.Min(size, bytes.Length - i)));
        }

        await meter.CompleteAsync();
        return (Encoding.UTF8.GetString(body.ToArray()), meter);
    }
}

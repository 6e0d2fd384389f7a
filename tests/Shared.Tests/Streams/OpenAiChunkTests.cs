using System.Buffers;
using System.Text;
using Contracts.Streams;

namespace Contracts.Tests.Streams;

/// <summary>OpenAI chunk reading with Utf8JsonReader: content, usage, [DONE], usage removal; invalid input is a result.</summary>
public sealed class OpenAiChunkTests
{
    private const string Compact = """{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel\"lo \u6f22"}},{"index":1,"delta":{"content":""}},{"index":2,"text":"legacy"}],"usage":{"prompt_tokens":12345,"completion_tokens":7,"total_tokens":12352}}""";

    private const string Spaced = """
        { "id" : "c1" , "object" : "chat.completion.chunk",
          "choices" : [ { "index" : 0, "delta" : { "role" : "assistant", "content" : "Hel\"lo \u6f22" } },
                        { "index" : 1, "delta" : { "content" : "" } }, { "index": 2, "text" : "legacy" } ],
          "usage" : { "prompt_tokens" : 12345 , "completion_tokens" : 7 , "total_tokens" : 12352 } }
        """;

    [Theory]
    [InlineData(Compact)]
    [InlineData(Spaced)]
    public void Content_and_running_usage_are_read_with_or_without_spaces(string json)
    {
        var sink = new ArrayBufferWriter<byte>();
        var info = OpenAiChunk.Parse(Encoding.UTF8.GetBytes(json), sink);
        Assert.Equal(OpenAiChunkKind.Json, info.Kind);
        Assert.Equal(3, info.Choices);
        Assert.Equal(2, info.ContentPieces); // the empty string is not a piece
        Assert.Equal("Hel\"lo 漢legacy", Encoding.UTF8.GetString(sink.WrittenSpan));
        Assert.Equal(sink.WrittenCount, info.ContentBytes);
        Assert.Equal(new TokenUsage(12345, 7, 12352), info.Usage);
        Assert.Equal(OpenAiUsagePlacement.WithChoices, info.UsagePlacement);
    }

    [Theory]
    [InlineData("""{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}""", OpenAiUsagePlacement.UsageOnly)]
    [InlineData("""{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}""", OpenAiUsagePlacement.UsageOnly)]
    [InlineData("""{"choices":[{"delta":{"content":"x"}}],"usage":null}""", OpenAiUsagePlacement.None)]
    [InlineData("""{"choices":[{"delta":{"content":null}}]}""", OpenAiUsagePlacement.None)]
    public void Usage_placement(string json, OpenAiUsagePlacement placement) =>
        Assert.Equal(placement, OpenAiChunk.Parse(Encoding.UTF8.GetBytes(json)).UsagePlacement);

    [Theory]
    [InlineData("[DONE]")]
    [InlineData(" [DONE]\r\n")]
    public void Done(string data) => Assert.Equal(OpenAiChunkKind.Done, OpenAiChunk.Parse(Encoding.UTF8.GetBytes(data)).Kind);

    [Theory]
    [InlineData("")]
    [InlineData("{")]
    [InlineData("""{"choices":[{"delta":{"content":"x"}}]""")]
    [InlineData("""{"choices":[]} trailing""")]
    [InlineData("[1,2]")]
    [InlineData("\"content\":\"x\"")]
    [InlineData("""{"usage":{"prompt_tokens":01}}""")]
    [InlineData("""{"choices":[{"delta":{"content":"\uZZZZ"}}]}""")]
    public void Invalid_json_is_a_result_not_an_exception(string data)
    {
        Assert.Equal(OpenAiChunkKind.Invalid, OpenAiChunk.Parse(Encoding.UTF8.GetBytes(data)).Kind);
        var output = new ArrayBufferWriter<byte>();
        Assert.Equal(UsageRemoval.Invalid, OpenAiChunk.RemoveUsage(Encoding.UTF8.GetBytes(data), output));
        Assert.Equal(0, output.WrittenCount);
    }

    [Fact]
    public void A_chunk_cut_inside_a_number_or_a_character_is_invalid_until_whole()
    {
        var bytes = Encoding.UTF8.GetBytes(Compact);
        for (var i = 0; i < bytes.Length; i++)
        {
            Assert.Equal(OpenAiChunkKind.Invalid, OpenAiChunk.Parse(bytes.AsSpan(0, i)).Kind);
        }

        Assert.Equal(OpenAiChunkKind.Json, OpenAiChunk.Parse(bytes).Kind);
    }

    [Fact]
    public void Content_that_looks_like_a_key_is_not_mistaken_for_one()
    {
        var json = """{"choices":[{"delta":{"role":"assistant","tool":"\"content\":\"fake\"","content":"real"}}],"note":{"usage":{"prompt_tokens":99}}}""";
        var sink = new ArrayBufferWriter<byte>();
        var info = OpenAiChunk.Parse(Encoding.UTF8.GetBytes(json), sink);
        Assert.Equal("real", Encoding.UTF8.GetString(sink.WrittenSpan));
        Assert.False(info.HasUsage); // a nested "usage" is not the chunk's usage
        Assert.Equal(UsageRemoval.NotPresent, OpenAiChunk.RemoveUsage(Encoding.UTF8.GetBytes(json), sink));
    }

    [Theory]
    [InlineData(Compact)]
    [InlineData(Spaced)]
    public void Usage_is_removed_and_everything_else_kept(string json)
    {
        var output = new ArrayBufferWriter<byte>();
        Assert.Equal(UsageRemoval.Removed, OpenAiChunk.RemoveUsage(Encoding.UTF8.GetBytes(json), output));
        var text = Encoding.UTF8.GetString(output.WrittenSpan);
        Assert.Equal("""{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel\"lo \u6f22"}},{"index":1,"delta":{"content":""}},{"index":2,"text":"legacy"}]}""", text);
        var again = OpenAiChunk.Parse(output.WrittenSpan);
        Assert.False(again.HasUsage);
        Assert.Equal(2, again.ContentPieces);
    }

    [Fact]
    public void Usage_first_null_or_escaped_names_are_handled_when_removing()
    {
        var output = new ArrayBufferWriter<byte>();
        Assert.Equal(UsageRemoval.Removed, OpenAiChunk.RemoveUsage("""{"usage":null,"a\u0062":[1,2.5,true,null,{"x":-3e2}]}"""u8, output));
        Assert.Equal("""{"ab":[1,2.5,true,null,{"x":-3e2}]}""", Encoding.UTF8.GetString(output.WrittenSpan));
    }

    [Fact]
    public void A_non_streamed_response_usage_and_message_content()
    {
        var body = """
            {"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],
             "usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0}}}
            """u8;
        Assert.True(OpenAiChunk.TryReadUsage(body, out var usage));
        Assert.Equal(new TokenUsage(9, 2, 11), usage);
        Assert.Equal(8, OpenAiChunk.Parse(body).ContentBytes);
        Assert.False(OpenAiChunk.TryReadUsage("""{"choices":[]}"""u8, out _));
        Assert.False(OpenAiChunk.TryReadUsage("not json"u8, out _));
    }

    [Fact]
    public void An_error_object_in_the_stream_is_flagged() =>
        Assert.True(OpenAiChunk.Parse("""{"error":{"message":"overloaded","code":"queue_full"}}"""u8).HasError);
}

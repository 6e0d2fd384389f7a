using System.Text.Json;

namespace Replay.Clients;

/// <summary>What a server message means to a turn-by-turn WebSocket session.</summary>
internal enum WebSocketReply
{
    /// <summary>Part of the reply (a token, or any message that is not a JSON object ending the turn).</summary>
    Part,

    /// <summary>A JSON object with a top-level <c>done</c> property: the reply ended well.</summary>
    Done,

    /// <summary>A JSON object with a top-level <c>error</c> property: the reply ended in an error.</summary>
    Error,
}

/// <summary>
/// Reads server messages of conversational WebSocket servers (the simulator's <c>/v1/stream</c>, the gateway in front
/// of it) with <see cref="Utf8JsonReader"/>: only a top-level <c>done</c> or <c>error</c> property ends a turn, so a
/// token whose text contains the word <c>"done"</c> does not, and spacing in the JSON does not matter.
/// </summary>
internal static class WebSocketReplies
{
    /// <summary>Classifies one whole message; for an error, <paramref name="code"/> is its <c>code</c> (top level or inside an <c>error</c> object), else <c>error</c>.</summary>
    public static WebSocketReply Classify(ReadOnlySpan<byte> message, out string code)
    {
        code = "error";
        var trimmed = message.TrimStart(" \t\r\n"u8);
        if (trimmed.IsEmpty || trimmed[0] != (byte)'{')
        {
            return WebSocketReply.Part;
        }

        var reader = new Utf8JsonReader(message, new JsonReaderOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        var result = WebSocketReply.Part;
        try
        {
            reader.Read(); // {
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("done"u8))
                {
                    result = result == WebSocketReply.Error ? result : WebSocketReply.Done;
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("error"u8))
                {
                    result = WebSocketReply.Error;
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.StartObject)
                    {
                        var depth = reader.CurrentDepth;
                        while (reader.Read() && reader.CurrentDepth > depth)
                        {
                            if (reader.TokenType == JsonTokenType.PropertyName && reader.CurrentDepth == depth + 1 && reader.ValueTextEquals("code"u8))
                            {
                                reader.Read();
                                if (reader.TokenType == JsonTokenType.String)
                                {
                                    code = reader.GetString() ?? code;
                                }
                            }
                            else if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray)
                            {
                                reader.Skip();
                            }
                        }
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
                else if (reader.ValueTextEquals("code"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.String)
                    {
                        code = reader.GetString() ?? code;
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
                else
                {
                    reader.Skip();
                }
            }
        }
        catch (JsonException)
        {
            return WebSocketReply.Part; // not JSON: a part of the reply
        }

        if (string.IsNullOrEmpty(code))
        {
            code = "error";
        }

        return result;
    }
}

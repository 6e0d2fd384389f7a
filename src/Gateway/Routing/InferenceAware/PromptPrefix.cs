using System.Text;
using System.Text.Json;
using Inference.V1;

namespace Gateway.Routing.InferenceAware;

/// <summary>
/// The text a prompt-prefix match is taken over, and its chained block hashes. The text approximates the chat
/// template: each message's role, a newline, its content and a newline, in order (an OpenAI chat body), or the
/// completion <c>prompt</c>, or a gRPC <c>GenerateRequest.prompt</c>. Two prompts sharing a system message and the
/// first turns of a conversation share that text's leading blocks, as they share the KV blocks of a vLLM replica.
/// </summary>
internal static class PromptPrefix
{
    /// <summary>Most characters of prompt text kept (<see cref="InferenceAwareSettings.MaxPrefixBlocks"/> blocks).</summary>
    public const int MaxChars = InferenceAwareSettings.MaxPrefixBlocks * InferenceAwareSettings.BlockChars;

    private const ulong FnvOffset = 14695981039346656037UL;
    private const ulong FnvPrime = 1099511628211UL;

    /// <summary>
    /// The chat text of an OpenAI-style JSON body, read with <see cref="Utf8JsonReader"/>, cut at <see cref="MaxChars"/>;
    /// null when the body is not a JSON object or has neither <c>messages</c> nor <c>prompt</c>.
    /// </summary>
    public static string? FromJson(ReadOnlySpan<byte> json)
    {
        if (json.IsEmpty)
        {
            return null;
        }

        try
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return null;
            }

            StringBuilder? text = null;
            string? prompt = null;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("messages"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.StartArray)
                    {
                        text = new StringBuilder(1024);
                        ReadMessages(ref reader, text);
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
                else if (reader.ValueTextEquals("prompt"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.String)
                    {
                        prompt = reader.GetString();
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }

            var result = text is { Length: > 0 } ? text.ToString(0, Math.Min(text.Length, MaxChars)) : prompt;
            return result is { Length: > MaxChars } ? result[..MaxChars] : result;
        }
        catch (JsonException)
        {
            return null;
        }
        catch (InvalidOperationException)
        {
            return null; // a string that is not valid UTF-8
        }
    }

    /// <summary>The prompt of a gRPC <c>inference.v1</c> request body (5-byte prefix + <c>GenerateRequest</c>), cut at <see cref="MaxChars"/>; null when it does not parse.</summary>
    public static string? FromGrpc(ReadOnlySpan<byte> body)
    {
        if (body.Length < 5 || body[0] != 0)
        {
            return null;
        }

        var length = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(body[1..]);
        if (length > body.Length - 5)
        {
            return null;
        }

        try
        {
            var prompt = GenerateRequest.Parser.ParseFrom(body.Slice(5, length)).Prompt;
            return prompt.Length > MaxChars ? prompt[..MaxChars] : prompt;
        }
        catch (Google.Protobuf.InvalidProtocolBufferException)
        {
            return null;
        }
    }

    /// <summary>
    /// Writes the chained hash of each full block of <see cref="InferenceAwareSettings.BlockChars"/> characters of
    /// <paramref name="text"/> into <paramref name="chain"/> (as many as fit) and returns how many were written; a
    /// trailing partial block is not hashed (as vLLM caches only full KV blocks). Block <c>i</c>'s hash is
    /// FNV-1a (64-bit; Fowler, Noll and Vo) continued from block <c>i − 1</c>'s over its own characters, i.e. the hash
    /// of the whole prefix up to it, found in one pass.
    /// </summary>
    public static int Chain(ReadOnlySpan<char> text, Span<ulong> chain)
    {
        var blocks = Math.Min(text.Length / InferenceAwareSettings.BlockChars, chain.Length);
        var hash = FnvOffset;
        for (var b = 0; b < blocks; b++)
        {
            foreach (var c in text.Slice(b * InferenceAwareSettings.BlockChars, InferenceAwareSettings.BlockChars))
            {
                hash = (hash ^ (byte)c) * FnvPrime;
                hash = (hash ^ (byte)(c >> 8)) * FnvPrime;
            }

            chain[b] = hash;
        }

        return blocks;
    }

    /// <summary>FNV-1a (64-bit) of a string: a destination id's stable hash, the same in every gateway process.</summary>
    public static ulong Hash(string value)
    {
        var hash = FnvOffset;
        foreach (var c in value)
        {
            hash = (hash ^ (byte)c) * FnvPrime;
            hash = (hash ^ (byte)(c >> 8)) * FnvPrime;
        }

        return hash;
    }

    /// <summary>A session's key in the prefix table: FNV-1a of the id, mixed so that it is not a block chain's hash.</summary>
    public static ulong SessionKey(string sessionId) => Mix(Hash(sessionId), 0x5E55_1000_5E55_1000UL);

    /// <summary>
    /// Mixes a prefix hash with a destination's hash (the finalizer of SplitMix64, Steele, Lea and Flood 2014): the
    /// weight of rendezvous hashing (Thaler and Ravishankar 1998), so that equal scores go to a destination that
    /// depends on the prompt, the same one in every gateway.
    /// </summary>
    public static ulong Mix(ulong a, ulong b)
    {
        var z = a ^ (b + 0x9E3779B97F4A7C15UL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static void ReadMessages(ref Utf8JsonReader reader, StringBuilder text)
    {
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                reader.Skip();
                continue;
            }

            string? role = null;
            var start = text.Length;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("role"u8))
                {
                    reader.Read();
                    role = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                    if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray)
                    {
                        reader.Skip();
                    }
                }
                else if (reader.ValueTextEquals("content"u8))
                {
                    reader.Read();
                    AppendContent(ref reader, text);
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }

            // role, newline, content, newline; the role may come after the content in the JSON.
            text.Insert(start, '\n').Insert(start, role ?? string.Empty);
            text.Append('\n');
            if (text.Length >= MaxChars)
            {
                return;
            }
        }
    }

    /// <summary>A string content, or the <c>text</c> of each part of an array content.</summary>
    private static void AppendContent(ref Utf8JsonReader reader, StringBuilder text)
    {
        if (reader.TokenType == JsonTokenType.String)
        {
            text.Append(reader.GetString());
            return;
        }

        if (reader.TokenType != JsonTokenType.StartArray)
        {
            reader.Skip();
            return;
        }

        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                reader.Skip();
                continue;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isText = reader.ValueTextEquals("text"u8);
                reader.Read();
                if (isText && reader.TokenType == JsonTokenType.String)
                {
                    text.Append(reader.GetString());
                }
                else
                {
                    reader.Skip();
                }
            }
        }
    }
}

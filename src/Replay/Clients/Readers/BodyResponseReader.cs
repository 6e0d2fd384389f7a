using System.Buffers;
using System.Security.Cryptography;
using Contracts.Streams;

namespace Replay.Clients.Readers;

/// <summary>
/// Reads a whole (non-streamed) response body: its OpenAI <c>usage.completion_tokens</c> through
/// <see cref="OpenAiChunk.TryReadUsage"/> (<see cref="System.Text.Json.Utf8JsonReader"/>), its SHA-256 for
/// <c>--compare</c>, and for generated conversations the answer's text. Bodies over 1 MiB are hashed as they stream and
/// not kept.
/// </summary>
internal static class BodyResponseReader
{
    private const int ReadBufferSize = 4 * 1024;
    private const int MaxKeptBody = 1 << 20;

    /// <summary>A non-streamed chat completion's <c>choices[0].message.content</c> (or <c>text</c>), or null.</summary>
    internal static string? MessageContent(ReadOnlySpan<byte> body)
    {
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(body.ToArray());
            if (doc.RootElement.TryGetProperty("choices", out var choices) && choices.ValueKind == System.Text.Json.JsonValueKind.Array && choices.GetArrayLength() > 0)
            {
                var choice = choices[0];
                if (choice.TryGetProperty("message", out var m) && m.TryGetProperty("content", out var c) && c.ValueKind == System.Text.Json.JsonValueKind.String)
                {
                    return c.GetString();
                }

                if (choice.TryGetProperty("text", out var t) && t.ValueKind == System.Text.Json.JsonValueKind.String)
                {
                    return t.GetString();
                }
            }
        }
        catch (System.Text.Json.JsonException)
        {
        }

        return null;
    }

    /// <summary>Reads a whole body; returns <c>completion_tokens</c> (-1 when absent) and whether its SHA-256 equals <paramref name="expectedSha256"/>.</summary>
    public static async ValueTask<(int Usage, bool HashMatches, string? Text)> ReadAsync(Stream content, string? expectedSha256, bool captureText, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(ReadBufferSize);
        using var hash = expectedSha256 is null ? null : IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var end = 0;
        try
        {
            while (true)
            {
                if (end == buffer.Length)
                {
                    if (buffer.Length >= MaxKeptBody)
                    {
                        hash?.AppendData(buffer, 0, end);
                        end = 0;
                    }
                    else
                    {
                        var bigger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                        Buffer.BlockCopy(buffer, 0, bigger, 0, end);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = bigger;
                    }
                }

                var read = await content.ReadAsync(buffer.AsMemory(end), cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                end += read;
            }

            var span = buffer.AsSpan(0, end);
            var usage = OpenAiChunk.TryReadUsage(span, out var counts) && counts.CompletionTokens >= 0 ? (int)Math.Min(counts.CompletionTokens, int.MaxValue) : -1;

            var matches = false;
            if (hash is not null)
            {
                hash.AppendData(buffer, 0, end);
                var actual = Convert.ToHexStringLower(hash.GetHashAndReset());
                matches = string.Equals(actual, expectedSha256, StringComparison.OrdinalIgnoreCase);
            }

            return (usage, matches, captureText && hash is null ? MessageContent(span) : null);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}

using Microsoft.ML.Tokenizers;

namespace Contracts.Tokens;

/// <summary>
/// Counts and builds prompt tokens with a real byte-pair-encoding tokenizer: OpenAI's <c>cl100k_base</c>
/// (the GPT-4 / GPT-3.5 vocabulary), through Microsoft.ML.Tokenizers. The gateway (token-aware limits), the
/// simulated model server (prefill cost) and the replay tool (prompts of a trace's size) all count with it, so
/// a token means the same thing everywhere in the system.
/// </summary>
/// <remarks>
/// A model server may use another vocabulary (Llama, Qwen); counts then differ by a few percent, which is within
/// what an up-front estimate needs. The instance is thread-safe and immutable; use <see cref="Default"/>.
/// </remarks>
public sealed class TokenCounter
{
    private static readonly Lazy<TokenCounter> s_shared = new(static () => new TokenCounter(), LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The word repeated by <see cref="BuildPrompt"/>: with a leading space it is exactly one cl100k token.</summary>
    private const string FillerWord = " hello";

    private readonly Tokenizer _tokenizer;

    private TokenCounter() => _tokenizer = TiktokenTokenizer.CreateForModel("gpt-4");

    /// <summary>The process-wide instance (the vocabulary is loaded once, about 100 ms, on first use).</summary>
    public static TokenCounter Default => s_shared.Value;

    /// <summary>Number of tokens in <paramref name="text"/>; 0 for null or empty text.</summary>
    public int Count(string? text) => string.IsNullOrEmpty(text) ? 0 : _tokenizer.CountTokens(text);

    /// <summary>Number of tokens in <paramref name="text"/>; 0 for empty text.</summary>
    public int Count(ReadOnlySpan<char> text) => text.IsEmpty ? 0 : _tokenizer.CountTokens(text);

    /// <summary>
    /// Builds a prompt that is exactly <paramref name="tokens"/> tokens long: <c>"hello"</c> followed by
    /// <c>tokens - 1</c> repetitions of <c>" hello"</c> (each one token, since cl100k's pre-tokenizer splits
    /// words before merging). Used to turn a trace row's <c>ContextTokens</c> into a request.
    /// </summary>
    /// <param name="tokens">Prompt length in tokens; 0 gives the empty string.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tokens"/> is negative.</exception>
    public static string BuildPrompt(int tokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        if (tokens == 0)
        {
            return string.Empty;
        }

        return string.Create(5 + ((tokens - 1) * FillerWord.Length), tokens, static (span, n) =>
        {
            "hello".AsSpan().CopyTo(span);
            var rest = span[5..];
            for (var i = 1; i < n; i++)
            {
                FillerWord.AsSpan().CopyTo(rest);
                rest = rest[FillerWord.Length..];
            }
        });
    }
}

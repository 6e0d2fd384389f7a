using System.Buffers;
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

    /// <summary>Number of tokens in <paramref name="text"/>; 0 for null or empty text. See <see cref="Count(ReadOnlySpan{char}, CancellationToken)"/>.</summary>
    /// <param name="text">The text to count.</param>
    /// <param name="cancellationToken">Checked between slices of an over-long run (see the span overload).</param>
    public int Count(string? text, CancellationToken cancellationToken = default) =>
        string.IsNullOrEmpty(text) ? 0 : Count(text.AsSpan(), cancellationToken);

    /// <summary>
    /// Number of tokens in <paramref name="text"/>; 0 for empty text. Exact (the tokenizer's own count) unless the
    /// text holds a run of more than <see cref="MaxRunLength"/> characters without a change between whitespace and
    /// non-whitespace; such a run is counted in slices, an over-estimate bounded by a few tokens per slice.
    /// </summary>
    /// <remarks>
    /// <para>
    /// Why: the byte-pair encoder's merge loop is quadratic in the length of one pre-token (a word, a run of
    /// punctuation or of whitespace), so one prompt of a single repeated character (<c>"x"</c> × 1 MiB) took many
    /// minutes of CPU to count exactly (64 KiB ≈ 1 s, 128 KiB ≈ 3.3 s: doubling the run quadruples it) and the
    /// request never got an answer.
    /// </para>
    /// <para>
    /// Shape: the text is scanned (vectorized) for maximal runs of whitespace or of non-whitespace characters. If
    /// none is longer than <see cref="MaxRunLength"/>, the text is counted in one call, as before (the common path:
    /// no allocation, same result). Otherwise the stretches between over-long runs are counted as they are, and
    /// each over-long run in slices of at most <see cref="MaxRunLength"/> characters (never splitting a surrogate
    /// pair), and the counts are summed.
    /// </para>
    /// <para>
    /// Bound: cost is linear in the text's length (a slice costs at most a constant: 1 MiB of one character is
    /// counted in well under a second instead of many minutes), and the result exceeds the exact count by at most a
    /// few tokens per slice (plus one at each end of an over-long run), since a cut only stops merges across it (the
    /// tests check, on runs of letters, digits, punctuation, spaces, CJK, emoji and base64, that it is never below
    /// the exact count and within 3 % of it). An over-estimate is the safe side for a token budget, and such text
    /// (hundreds of characters without a space) is rarely language anyway.
    /// </para>
    /// </remarks>
    /// <param name="text">The text to count.</param>
    /// <param name="cancellationToken">Checked between slices of an over-long run and between the stretches around them.</param>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while counting slices.</exception>
    public int Count(ReadOnlySpan<char> text, CancellationToken cancellationToken = default)
    {
        if (text.IsEmpty)
        {
            return 0;
        }

        return text.Length <= MaxRunLength || !HasLongRun(text) ? _tokenizer.CountTokens(text) : CountInSlices(text, cancellationToken);
    }

    /// <summary>
    /// Longest run of whitespace or non-whitespace characters counted in one piece; longer runs are counted in
    /// slices of this many characters (see <see cref="Count(ReadOnlySpan{char}, CancellationToken)"/>).
    /// </summary>
    public const int MaxRunLength = 256;

    /// <summary>Every UTF-16 code unit <see cref="char.IsWhiteSpace(char)"/> accepts (what the pre-tokenizer's <c>\s</c> matches).</summary>
    private static readonly SearchValues<char> s_whitespace = SearchValues.Create(
        Enumerable.Range(0, char.MaxValue + 1).Select(static c => (char)c).Where(char.IsWhiteSpace).ToArray());

    /// <summary>Length of the run of one class (whitespace or not) that starts at the beginning of <paramref name="text"/>.</summary>
    private static int RunLength(ReadOnlySpan<char> text)
    {
        var end = s_whitespace.Contains(text[0]) ? text.IndexOfAnyExcept(s_whitespace) : text.IndexOfAny(s_whitespace);
        return end < 0 ? text.Length : end;
    }

    private static bool HasLongRun(ReadOnlySpan<char> text)
    {
        for (var i = 0; i < text.Length;)
        {
            var run = RunLength(text[i..]);
            if (run > MaxRunLength)
            {
                return true;
            }

            i += run;
        }

        return false;
    }

    private int CountInSlices(ReadOnlySpan<char> text, CancellationToken cancellationToken)
    {
        var tokens = 0;
        foreach (var piece in Pieces(text, cancellationToken))
        {
            tokens += _tokenizer.CountTokens(text[piece]);
        }

        return tokens;
    }

    /// <summary>
    /// Appends the token ids of <paramref name="text"/> to <paramref name="ids"/>, cut exactly as
    /// <see cref="Count(ReadOnlySpan{char}, CancellationToken)"/> cuts it, so the number appended always equals
    /// <c>Count(text)</c> (the simulated model server hashes these ids into prefix-cache blocks).
    /// </summary>
    /// <param name="text">The text to encode.</param>
    /// <param name="ids">Receives the ids, in order.</param>
    /// <param name="cancellationToken">Checked between slices of an over-long run.</param>
    /// <returns>The number of ids appended.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="ids"/> is null.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while encoding slices.</exception>
    public int Encode(ReadOnlySpan<char> text, List<int> ids, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (text.IsEmpty)
        {
            return 0;
        }

        var before = ids.Count;
        if (text.Length <= MaxRunLength || !HasLongRun(text))
        {
            ids.AddRange(_tokenizer.EncodeToIds(text));
        }
        else
        {
            foreach (var piece in Pieces(text, cancellationToken))
            {
                ids.AddRange(_tokenizer.EncodeToIds(text[piece]));
            }
        }

        return ids.Count - before;
    }

    /// <summary>
    /// The pieces an over-long text is counted in: the stretches between over-long runs as they are, and each over-long
    /// run in slices of at most <see cref="MaxRunLength"/> characters (never splitting a surrogate pair).
    /// </summary>
    private static List<Range> Pieces(ReadOnlySpan<char> text, CancellationToken cancellationToken)
    {
        var pieces = new List<Range>();
        var stretch = 0; // start of the stretch of short runs not yet cut
        for (var i = 0; i < text.Length;)
        {
            var run = RunLength(text[i..]);
            if (run <= MaxRunLength)
            {
                i += run;
                continue;
            }

            cancellationToken.ThrowIfCancellationRequested();
            if (i > stretch)
            {
                pieces.Add(stretch..i);
            }

            var end = i + run;
            while (i < end)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var cut = Math.Min(end, i + MaxRunLength);
                if (cut < end && char.IsLowSurrogate(text[cut]) && char.IsHighSurrogate(text[cut - 1]))
                {
                    cut--;
                }

                pieces.Add(i..cut);
                i = cut;
            }

            stretch = end;
        }

        if (stretch < text.Length)
        {
            cancellationToken.ThrowIfCancellationRequested();
            pieces.Add(stretch..text.Length);
        }

        return pieces;
    }

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

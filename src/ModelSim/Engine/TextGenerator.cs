using System.Text;

namespace ModelSim.Engine;

/// <summary>
/// Deterministic output text: token <c>i</c> of a request is a word picked by a hash of (seed, prompt, i), so the same
/// request always gets the same text on every run and every instance with the same seed, and a shorter
/// <c>max_tokens</c> gives a prefix of a longer one (as greedy decoding would).
/// </summary>
/// <remarks>
/// Every word has a leading space and is a single cl100k token (checked by a test), so the text of N tokens counts
/// as N tokens with <see cref="Contracts.Tokens.TokenCounter"/>. Words are ASCII letters, so they need no JSON escaping:
/// streaming writers copy <see cref="Utf8"/> straight into the response.
/// </remarks>
internal static class TextGenerator
{
    private static readonly string[] s_words = [.. Contracts.Tokens.SingleTokenWords.All];

    private static readonly byte[][] s_utf8 = BuildUtf8();

    /// <summary>Number of distinct words.</summary>
    public static int VocabularySize => s_words.Length;

    /// <summary>All words, for tests.</summary>
    public static ReadOnlySpan<string> Words => s_words;

    /// <summary>
    /// Key of a request's text: a mix of <paramref name="seed"/> and the FNV-1a hash of the prompt
    /// (<see cref="HashPrompt"/>). Token <c>i</c> is then <see cref="Word"/>(key, i).
    /// </summary>
    public static ulong TextKey(int seed, ulong promptHash) => Mix(promptHash ^ ((ulong)(uint)seed * 0x9E3779B97F4A7C15UL));

    /// <summary>The word index of token <paramref name="index"/> of a request with key <paramref name="textKey"/>.</summary>
    public static int WordIndex(ulong textKey, int index) =>
        (int)(Mix(textKey + ((ulong)(uint)index * 0xD1B54A32D192ED03UL)) % (ulong)s_words.Length);

    /// <summary>Token <paramref name="index"/> as a string (interned, no allocation).</summary>
    public static string Word(ulong textKey, int index) => s_words[WordIndex(textKey, index)];

    /// <summary>Token <paramref name="index"/> as UTF-8 bytes (shared, never modify).</summary>
    public static ReadOnlySpan<byte> Utf8(ulong textKey, int index) => s_utf8[WordIndex(textKey, index)];

    /// <summary>The whole text of <paramref name="tokens"/> tokens, in one allocation.</summary>
    public static string Text(ulong textKey, int tokens)
    {
        if (tokens <= 0)
        {
            return string.Empty;
        }

        var length = 0;
        for (var i = 0; i < tokens; i++)
        {
            length += s_words[WordIndex(textKey, i)].Length;
        }

        return string.Create(length, (textKey, tokens), static (span, state) =>
        {
            for (var i = 0; i < state.tokens; i++)
            {
                var word = s_words[WordIndex(state.textKey, i)];
                word.AsSpan().CopyTo(span);
                span = span[word.Length..];
            }
        });
    }

    /// <summary>64-bit FNV-1a hash of UTF-16 text (Fowler, Noll, Vo; http://www.isthe.com/chongo/tech/comp/fnv/), stable across processes.</summary>
    public static ulong HashPrompt(ReadOnlySpan<char> text, ulong hash = FnvOffset)
    {
        foreach (var c in text)
        {
            hash = (hash ^ c) * FnvPrime;
        }

        return hash;
    }

    /// <summary>FNV-1a 64-bit offset basis: the start value of <see cref="HashPrompt"/>.</summary>
    public const ulong FnvOffset = 14695981039346656037UL;

    private const ulong FnvPrime = 1099511628211UL;

    /// <summary>SplitMix64 finaliser (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA '14).</summary>
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static byte[][] BuildUtf8()
    {
        var result = new byte[s_words.Length][];
        for (var i = 0; i < s_words.Length; i++)
        {
            result[i] = Encoding.UTF8.GetBytes(s_words[i]);
        }

        return result;
    }
}

using System.Text;

namespace Replay.Sources;

/// <summary>
/// The prompt text of synthetic chat requests (<c>replay load</c> without a template, a template's
/// <c>prompt_tokens</c> requests): optionally one of <c>--prefix-groups</c> fixed prefixes of <c>--prefix-tokens</c>
/// tokens, then the request's own <c>--prompt-tokens</c>, distinct for every request.
/// </summary>
/// <remarks>
/// <para>Every word is one cl100k token with its leading space (the simulator's output vocabulary,
/// <c>src/ModelSim/Engine/TextGenerator.cs</c>, checked by a test), and cl100k's pre-tokenizer splits words before
/// merging, so N words count exactly N tokens. Words are ASCII letters: no JSON escaping.</para>
/// <para>Group <c>g</c>'s prefix is fixed by (<c>--seed</c>, g): the same in every run with that seed, so a
/// model server that cached it in an earlier run finds it again, as a long-lived system prompt is found. Groups
/// are taken round-robin by request number (request n gets group n mod N), so each group gets an equal share in
/// any window.</para>
/// <para>The own part starts with the request number written in base 128 (one word per 7 bits, up to 4 words), so
/// two requests of one run never share more than their prefix when the own part has at least 4 tokens; the rest
/// are words drawn by a SplitMix64 hash of (run salt, number, position). The run salt is drawn at start, so a
/// second run's own parts are not in the cache either.</para>
/// </remarks>
internal sealed class PromptText
{
    private static readonly byte[][] s_words = BuildWords();
    private static readonly int s_maxWordLength = s_words.Max(static w => w.Length);

    private readonly byte[][] _prefixes;
    private readonly ulong _salt;
    private long _next = -1;

    private PromptText(byte[][] prefixes, ulong salt)
    {
        _prefixes = prefixes;
        _salt = salt;
    }

    /// <summary>Number of prefix groups (0: no shared prefix).</summary>
    public int Groups => _prefixes.Length;

    /// <summary>Tokens of each shared prefix (0 without groups).</summary>
    public int PrefixTokens { get; private init; }

    /// <summary>The vocabulary, each word with its leading space (tests).</summary>
    internal static IEnumerable<string> Words => s_words.Select(static w => Encoding.ASCII.GetString(w));

    /// <summary>Creates the text source of a run.</summary>
    /// <param name="groups">Prefix groups, ≥ 0 (0: every prompt is the request's own text only).</param>
    /// <param name="prefixTokens">Tokens of each prefix, ≥ 1 when <paramref name="groups"/> &gt; 0.</param>
    /// <param name="seed">The run's seed: fixes the prefixes.</param>
    /// <param name="salt">Varies the own parts between runs (a random value in a run; fixed in tests).</param>
    public static PromptText Create(int groups, int prefixTokens, int seed, ulong salt)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(groups);
        ArgumentOutOfRangeException.ThrowIfLessThan(prefixTokens, groups > 0 ? 1 : 0);
        var prefixes = new byte[groups][];
        for (var g = 0; g < groups; g++)
        {
            var key = Mix(((ulong)(uint)seed << 32) ^ (ulong)(uint)g ^ 0x5052454649584553UL); // "PREFIXES"
            using var text = new MemoryStream(prefixTokens * 8);
            for (var i = 0; i < prefixTokens; i++)
            {
                text.Write(s_words[Word(key, i)]);
            }

            prefixes[g] = text.ToArray();
        }

        return new PromptText(prefixes, salt) { PrefixTokens = groups > 0 ? prefixTokens : 0 };
    }

    /// <summary>The next request's number (0, 1, …); thread-safe.</summary>
    public long NextRequest() => Interlocked.Increment(ref _next);

    /// <summary>Most bytes <see cref="Write"/> writes for <paramref name="ownTokens"/> own tokens.</summary>
    public int MaxLength(int ownTokens) => (_prefixes.Length == 0 ? 0 : _prefixes[0].Length) + (ownTokens * s_maxWordLength);

    /// <summary>Writes request <paramref name="request"/>'s prompt (its group's prefix, then its own words) into <paramref name="destination"/>.</summary>
    /// <returns>Bytes written.</returns>
    /// <param name="destination">At least <see cref="MaxLength"/> bytes.</param>
    /// <param name="request">The request's number (<see cref="NextRequest"/>).</param>
    /// <param name="ownTokens">Tokens of the request's own text.</param>
    /// <param name="withPrefix">False: the own words only (a later turn of a conversation, whose first turn had the prefix).</param>
    public int Write(Span<byte> destination, long request, int ownTokens, bool withPrefix = true)
    {
        var n = 0;
        if (withPrefix && _prefixes.Length > 0)
        {
            var prefix = _prefixes[(int)(request % _prefixes.Length)];
            prefix.CopyTo(destination);
            n = prefix.Length;
        }

        var key = Mix(_salt ^ ((ulong)request * 0x9E3779B97F4A7C15UL));
        for (var i = 0; i < ownTokens; i++)
        {
            var word = i < 4 ? s_words[(int)(((ulong)request >> (7 * i)) & 127)] : s_words[Word(key, i)];
            word.CopyTo(destination[n..]);
            n += word.Length;
        }

        return n;
    }

    /// <summary>Request <paramref name="request"/>'s prompt as a string (tests, synthetic conversation turns).</summary>
    public string ToText(long request, int ownTokens, bool withPrefix = true)
    {
        var buffer = new byte[MaxLength(ownTokens)];
        return Encoding.ASCII.GetString(buffer, 0, Write(buffer, request, ownTokens, withPrefix));
    }

    private static int Word(ulong key, int index) => (int)(Mix(key + ((ulong)(uint)index * 0xD1B54A32D192ED03UL)) % (ulong)s_words.Length);

    /// <summary>SplitMix64's finalizer (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014).</summary>
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static byte[][] BuildWords()
    {
        // The simulator's output words (each one cl100k token with its space), shared so both count tokens alike.
        string[] words = [.. Contracts.Tokens.SingleTokenWords.All];
        var bytes = new byte[words.Length][];
        for (var i = 0; i < words.Length; i++)
        {
            bytes[i] = Encoding.ASCII.GetBytes(words[i]);
        }

        return bytes;
    }
}

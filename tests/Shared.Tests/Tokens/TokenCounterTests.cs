using System.Diagnostics;
using System.Text;
using Contracts.Tokens;
using Microsoft.ML.Tokenizers;

namespace Contracts.Tests.Tokens;

/// <summary>Token counting: exact for ordinary text, bounded (linear, a slight over-estimate) for over-long runs.</summary>
public sealed class TokenCounterTests
{
    private static readonly TiktokenTokenizer s_exact = TiktokenTokenizer.CreateForModel("gpt-4");

    public static TheoryData<string> OrdinaryTexts => new()
    {
        "hello",
        "The quick brown fox jumps over the lazy dog.",
        TokenCounter.BuildPrompt(500),
        string.Concat(Enumerable.Repeat("Line one,\r\n\tindented: 12345 + 678 = 13023; üñíçødé 漢字 😀.\n\n", 200)),
        new string('x', TokenCounter.MaxRunLength) + " " + new string(' ', TokenCounter.MaxRunLength - 1) + "y", // runs of exactly MaxRunLength
        string.Join(' ', Enumerable.Range(0, 3000).Select(i => "w" + (i * 7919 % 10007))),
    };

    [Theory]
    [MemberData(nameof(OrdinaryTexts))]
    public void Ordinary_text_is_counted_exactly_as_the_tokenizer_counts_it(string text)
    {
        Assert.Equal(s_exact.CountTokens(text), TokenCounter.Default.Count(text));
        Assert.Equal(s_exact.CountTokens(text), TokenCounter.Default.Count(text.AsSpan()));
    }

    public static TheoryData<string> LongRuns => new()
    {
        new string('x', 8192),
        new string(' ', 8192),
        new string('!', 8192),
        new string('中', 4096),
        string.Concat(Enumerable.Repeat("😀", 2048)),
        string.Concat(Enumerable.Repeat("0123456789", 820)),
        Convert.ToBase64String(Enumerable.Range(0, 6144).Select(i => (byte)(i * 131 % 251)).ToArray()),
        "Some prose before. " + new string('y', 5000) + " and after, with words.",
    };

    [Theory]
    [MemberData(nameof(LongRuns))]
    public void A_long_run_is_counted_in_slices_at_least_the_exact_count_and_within_a_few_percent(string text)
    {
        var exact = s_exact.CountTokens(text);
        var counted = TokenCounter.Default.Count(text);
        Assert.InRange(counted, exact, exact + Math.Max(4, exact * 3 / 100));
    }

    [Fact]
    public void A_slice_never_splits_a_surrogate_pair()
    {
        // 'a' shifts the emoji so that a cut at MaxRunLength would land between the two halves of a pair.
        var text = "a" + string.Concat(Enumerable.Repeat("😀", TokenCounter.MaxRunLength));
        Assert.InRange(TokenCounter.Default.Count(text), s_exact.CountTokens(text), s_exact.CountTokens(text) + 8);
    }

    [Fact]
    public void A_megabyte_of_one_character_is_counted_in_bounded_time()
    {
        // Exactly, this takes many minutes (the encoder is quadratic in one word's length); sliced, well under a second.
        var text = new string('x', 1_048_500);
        var start = Stopwatch.GetTimestamp();
        var counted = TokenCounter.Default.Count(text);
        Assert.True(Stopwatch.GetElapsedTime(start) < TimeSpan.FromSeconds(10), $"took {Stopwatch.GetElapsedTime(start)}");
        Assert.InRange(counted, text.Length / 8, (text.Length / 8) + 64); // "xxxxxxxx" is one cl100k token
    }

    [Fact]
    public void Counting_slices_honours_cancellation()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.Throws<OperationCanceledException>(() => TokenCounter.Default.Count(new string('x', 100_000), cts.Token));
        Assert.Equal(2, TokenCounter.Default.Count("hello world", cts.Token)); // the single-call path has nothing to cancel
    }
}

using Contracts.Tokens;
using ModelSim.Engine;

namespace ModelSim.Tests.Engine;

public sealed class TextGeneratorTests
{
    [Fact]
    public void EveryWordIsOneCl100kTokenAndPlainAscii()
    {
        foreach (var word in TextGenerator.Words)
        {
            Assert.Equal(1, TokenCounter.Default.Count(word));
            Assert.Matches("^ [a-z]+$", word);
        }

        Assert.Equal(TextGenerator.VocabularySize, new HashSet<string>(TextGenerator.Words.ToArray()).Count);
    }

    [Fact]
    public void TextOfNTokensCountsAsNTokens()
    {
        var key = TextGenerator.TextKey(42, TextGenerator.HashPrompt("count me"));
        foreach (var n in new[] { 1, 7, 64, 500 })
        {
            Assert.Equal(n, TokenCounter.Default.Count(TextGenerator.Text(key, n)));
        }
    }

    [Fact]
    public void SameSeedAndPromptGiveTheSameTextAndShorterIsAPrefix()
    {
        var a = TextGenerator.Text(TextGenerator.TextKey(7, TextGenerator.HashPrompt("prompt")), 50);
        var b = TextGenerator.Text(TextGenerator.TextKey(7, TextGenerator.HashPrompt("prompt")), 50);
        var shorter = TextGenerator.Text(TextGenerator.TextKey(7, TextGenerator.HashPrompt("prompt")), 20);
        var otherSeed = TextGenerator.Text(TextGenerator.TextKey(8, TextGenerator.HashPrompt("prompt")), 50);
        var otherPrompt = TextGenerator.Text(TextGenerator.TextKey(7, TextGenerator.HashPrompt("prompt!")), 50);

        Assert.Equal(a, b);
        Assert.StartsWith(shorter, a, StringComparison.Ordinal);
        Assert.NotEqual(a, otherSeed);
        Assert.NotEqual(a, otherPrompt);
    }

    [Fact]
    public void WordsAreSpreadOverTheVocabulary()
    {
        var key = TextGenerator.TextKey(1, TextGenerator.HashPrompt("spread"));
        var counts = new int[TextGenerator.VocabularySize];
        const int N = 100_000;
        for (var i = 0; i < N; i++)
        {
            counts[TextGenerator.WordIndex(key, i)]++;
        }

        var mean = (double)N / counts.Length;
        Assert.All(counts, c => Assert.InRange(c, mean * 0.7, mean * 1.3));
    }
}

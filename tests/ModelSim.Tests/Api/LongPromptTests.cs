using System.Diagnostics;
using ModelSim.Tests.Support;

namespace ModelSim.Tests.Api;

/// <summary>A huge prompt that is one long "word" is counted in bounded (linear) time, so the simulator answers it.</summary>
public sealed class LongPromptTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData("/v1/generate")]
    [InlineData("/v1/chat/completions")]
    public async Task AMultiMegabytePromptOfOneRepeatedCharacterIsAnsweredPromptly(string path)
    {
        // Counted exactly, one such "word" took the encoder quadratic time (64 KiB: seconds; 1 MiB: many minutes):
        // a 10 MiB body hung the simulator. Sliced, 4 MiB is counted in about a second; the bound is generous for
        // a loaded test machine and still hours short of the exact count.
        await using var sim = await Sims.StartAsync(("PrefillMs", 0), ("PrefillPerTokenMs", 0), ("PerTokenMs", 0));
        using var client = new HttpClient { BaseAddress = sim.HttpAddress, Timeout = Bound };
        var prompt = new string('x', 4 * 1024 * 1024);
        object body = path == "/v1/generate"
            ? new { prompt, max_tokens = 1 }
            : new { messages = new[] { new { role = "user", content = prompt } }, max_tokens = 1 };

        var start = Stopwatch.GetTimestamp();
        var (response, json) = await Sims.PostAsync(client, path, body);
        var elapsed = Stopwatch.GetElapsedTime(start);

        Assert.Equal(200, (int)response.StatusCode);
        Assert.True(elapsed < Bound, $"answered after {elapsed}");
        var promptTokens = path == "/v1/generate" ? (int)json!["prompt_tokens"]! : (int)json!["usage"]!["prompt_tokens"]!;
        Assert.InRange(promptTokens, prompt.Length / 8, (prompt.Length / 8) + 16384); // "xxxxxxxx" is one cl100k token
    }
}

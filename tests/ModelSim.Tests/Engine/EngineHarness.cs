using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using ModelSim.Engine;

namespace ModelSim.Tests.Engine;

/// <summary>An engine on a fake clock: time moves only when a test advances it, so schedules can be checked exactly.</summary>
internal sealed class EngineHarness : IDisposable
{
    public EngineHarness(SimOptions options)
    {
        Time = new FakeTimeProvider();
        Engine = new GenerationEngine(Microsoft.Extensions.Options.Options.Create(options), Time, NullLogger<GenerationEngine>.Instance);
    }

    public FakeTimeProvider Time { get; }

    public GenerationEngine Engine { get; }

    public double NowMs => Engine.NowMs;

    public Sequence Admit(int promptTokens, int maxTokens, bool streaming = false, ulong key = 1)
    {
        var result = Engine.TryAdmit(new GenerationRequest(promptTokens, maxTokens, key), streaming, out var sequence);
        Assert.Equal(AdmissionResult.Accepted, result);
        return sequence!;
    }

    /// <summary>Admits a request whose prompt is the token ids <paramref name="ids"/>, hashed into blocks as the API does.</summary>
    public Sequence AdmitIds(IReadOnlyList<int> ids, int maxTokens, ulong key = 1)
    {
        var result = Engine.TryAdmit(new GenerationRequest(ids.Count, maxTokens, key, Hashes(ids, Engine.Options.PrefixCache.BlockTokens)), false, out var sequence);
        Assert.Equal(AdmissionResult.Accepted, result);
        return sequence!;
    }

    /// <summary>Chain hashes of the full blocks of a prompt of token ids (tag 0, as a plain prompt).</summary>
    public static ulong[] Hashes(IReadOnlyList<int> ids, int blockTokens)
    {
        var hasher = new PrefixHasher(blockTokens);
        foreach (var id in ids)
        {
            hasher.Add(id, 0);
        }

        return hasher.ToArray();
    }

    /// <summary>Token ids <c>first, first + 1, …</c>: distinct prompts for distinct <paramref name="first"/>s.</summary>
    public static int[] Ids(int first, int count) => Enumerable.Range(first, count).ToArray();

    public AdmissionResult TryAdmit(int promptTokens, int maxTokens) =>
        Engine.TryAdmit(new GenerationRequest(promptTokens, maxTokens, 1), false, out _);

    /// <summary>Advances the clock in 1 ms steps (timers fire at each step, as a real timer would at its resolution).</summary>
    public void AdvanceTo(double ms)
    {
        while (NowMs + 1 <= ms + 1e-9)
        {
            Time.Advance(TimeSpan.FromMilliseconds(1));
        }

        if (ms > NowMs)
        {
            Time.Advance(TimeSpan.FromMilliseconds(ms - NowMs));
        }
    }

    /// <summary>Advances until every given sequence ended, at most <paramref name="limitMs"/>.</summary>
    public void RunUntilDone(IEnumerable<Sequence> sequences, double limitMs = 10_000)
    {
        var all = sequences.ToList();
        while (all.Exists(s => !s.Completion.IsCompleted))
        {
            Assert.True(NowMs < limitMs, $"Sequences still running at {NowMs} ms.");
            Time.Advance(TimeSpan.FromMilliseconds(1));
        }
    }

    /// <summary>The outcome of a sequence that must have ended already.</summary>
    public static SequenceOutcome OutcomeOf(Sequence sequence)
    {
        Assert.True(sequence.Completion.IsCompleted, "The sequence has not ended.");
        return sequence.Completion.GetAwaiter().GetResult();
    }

    public void Dispose() => Engine.Dispose();
}

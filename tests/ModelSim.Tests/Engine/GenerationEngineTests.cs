using ModelSim.Engine;
using ModelSim.Tests.Support;

namespace ModelSim.Tests.Engine;

/// <summary>The engine on a fake clock: schedules, queueing, cancellation and counters checked exactly.</summary>
public sealed class GenerationEngineTests
{
    private const double Exact = 1e-6;

    [Fact]
    public void LoneRequestTakesPrefillPlusOneStepPerToken()
    {
        using var h = new EngineHarness(new SimOptions { Slots = 4, PrefillMs = 10, PrefillPerTokenMs = 0.5, PerTokenMs = 2.5, BatchSlowdown = 1 });
        var s = h.Admit(promptTokens: 8, maxTokens: 10, streaming: true);

        // prefill 10 + 8 × 0.5 = 14 ms; tokens due at 16.5, 19, 21.5, 24, 26.5, …, 39.
        h.AdvanceTo(16);
        Assert.Equal(0, s.Generated);
        h.AdvanceTo(26);
        Assert.Equal(4, s.Generated);
        h.RunUntilDone([s]);

        Assert.Equal(SequenceOutcome.Completed, EngineHarness.OutcomeOf(s));
        Assert.Equal(0, s.AdmittedAtMs, Exact);
        Assert.Equal(39, s.FinishedAtMs, Exact);
        Assert.Equal(LatencyModel.UnloadedLatencyMs(h.Engine.Options, 8, 10), s.FinishedAtMs, Exact);
        Assert.InRange(h.NowMs, 39, 41); // observed within the timer's resolution
        Assert.Equal(10, s.Generated);
    }

    [Fact]
    public void TokensStreamInOrderAsTheyAreProduced()
    {
        using var h = new EngineHarness(new SimOptions { Slots = 1, PrefillMs = 5, PerTokenMs = 3 });
        var s = h.Admit(0, 6, streaming: true);
        h.RunUntilDone([s]);
        var indices = new List<int>();
        while (s.Tokens.TryRead(out var index))
        {
            indices.Add(index);
        }

        Assert.Equal([0, 1, 2, 3, 4, 5], indices);
        Assert.True(s.Tokens.Completion.IsCompleted);
    }

    [Fact]
    public void StepTimeGrowsWithBatchOccupancy()
    {
        // step(r) = 2.5 × (1 + 1 × (r − 1) / 3): 2.5, 3.333, 4.167, 5 ms.
        var options = new SimOptions { Slots = 4, PrefillMs = 10, PrefillPerTokenMs = 0, PerTokenMs = 2.5, BatchSlowdown = 1 };
        using var h = new EngineHarness(options);
        var batch = Enumerable.Range(0, 4).Select(_ => h.Admit(0, 10)).ToList();
        h.RunUntilDone(batch);

        // Sequence k's first step is scheduled with k sequences running, every later one with all 4.
        double[] expected = [10 + 2.5 + 45, 10 + (2.5 * 4 / 3) + 45, 10 + (2.5 * 5 / 3) + 45, 10 + 5 + 45];
        for (var k = 0; k < 4; k++)
        {
            Assert.Equal(expected[k], batch[k].FinishedAtMs, Exact);
        }

        Assert.Equal(5, LatencyModel.StepMs(options, 4), Exact);
        Assert.Equal(60, LatencyModel.SaturatedSlotMs(options, 0, 10), Exact);
    }

    [Fact]
    public void FullSlotsQueueFifoAndAFullQueueRefusesAtOnce()
    {
        using var h = new EngineHarness(new SimOptions { Slots = 1, Queue = 2, PrefillMs = 10, PerTokenMs = 2 });
        var a = h.Admit(0, 5);
        var b = h.Admit(0, 5);
        var c = h.Admit(0, 5);
        Assert.Equal(AdmissionResult.QueueFull, h.TryAdmit(0, 5));

        var stats = h.Engine.GetStats();
        Assert.Equal((4, 1, 1, 2, 2), (stats.Requests, stats.Rejected, stats.Inflight, stats.QueueDepth, stats.QueueDepthMax));
        Sims.AssertBalanced(stats);

        h.RunUntilDone([a, b, c]);
        // Each request holds the slot 20 ms; the next takes it at the exact time the previous one finished.
        Assert.Equal(20, a.FinishedAtMs, Exact);
        Assert.Equal(20, b.AdmittedAtMs, Exact);
        Assert.Equal(40, b.FinishedAtMs, Exact);
        Assert.Equal(40, c.AdmittedAtMs, Exact);
        Assert.Equal(60, c.FinishedAtMs, Exact);

        stats = h.Engine.GetStats();
        Assert.Equal((4L, 1L, 3L, 0, 0, 2), (stats.Requests, stats.Rejected, stats.Completed, stats.Inflight, stats.QueueDepth, stats.QueueDepthMax));
        Assert.Equal(15, stats.GeneratedTokens);
        Sims.AssertBalanced(stats);
    }

    [Fact]
    public void CancellingFreesTheQueuePlaceOrTheSlotAtOnce()
    {
        using var h = new EngineHarness(new SimOptions { Slots = 1, Queue = 4, PrefillMs = 10, PerTokenMs = 2 });
        var running = h.Admit(3, 100);
        var queued1 = h.Admit(5, 5);
        var queued2 = h.Admit(7, 5);
        h.AdvanceTo(30);

        queued1.Cancel();
        Assert.Equal(SequenceOutcome.Cancelled, EngineHarness.OutcomeOf(queued1));
        Assert.Equal(1, h.Engine.GetStats().QueueDepth);

        running.Cancel();
        Assert.Equal(SequenceOutcome.Cancelled, EngineHarness.OutcomeOf(running));
        var stats = h.Engine.GetStats();
        Assert.Equal((1, 0, 2L), (stats.Inflight, stats.QueueDepth, stats.Cancelled));
        Assert.Equal(30, queued2.AdmittedAtMs, Exact); // took the freed slot at once
        Assert.Equal(3 + 7, stats.PromptTokens); // the cancelled queued request never reached the GPU

        h.RunUntilDone([queued2]);
        queued2.Cancel(); // no-op once ended
        stats = h.Engine.GetStats();
        Assert.Equal((2L, 1L), (stats.Cancelled, stats.Completed));
        Sims.AssertBalanced(stats);
    }

    [Fact]
    public void SaturatedThroughputIsTheCapacityFormula()
    {
        var options = new SimOptions { Slots = 4, Queue = 100, PrefillMs = 10, PrefillPerTokenMs = 0, PerTokenMs = 2, BatchSlowdown = 0.5 };
        using var h = new EngineHarness(options);
        var all = Enumerable.Range(0, 40).Select(_ => h.Admit(0, 10)).ToList();
        h.RunUntilDone(all);

        // Slot time at saturation: 10 + 10 × 2 × 1.5 = 40 ms → capacity 1000 × 4 / 40 = 100 requests/s → 40 in 400 ms.
        Assert.Equal(100, LatencyModel.CapacityPerSecond(options, 0, 10), Exact);
        var makespan = all.Max(s => s.FinishedAtMs);
        Assert.InRange(makespan, 399, 400 + Exact); // the first wave's first steps are cheaper (fewer running)
        var measured = 40 / (makespan / 1000);
        Assert.InRange(measured, 99.9, 100.3);
    }

    [Fact]
    public void StallFreezesGenerationAndPushesTheScheduleBack()
    {
        using var h = new EngineHarness(new SimOptions { Slots = 2, PrefillMs = 10, PerTokenMs = 5, BatchSlowdown = 0 });
        var s = h.Admit(0, 10); // alone: 10 + 10 × 5 = 60 ms
        h.AdvanceTo(20);
        Assert.Equal(2, s.Generated);

        h.Engine.Stall(TimeSpan.FromMilliseconds(100));
        h.AdvanceTo(50);
        var late = h.Admit(0, 1); // a free slot during a stall: its prefill starts when the stall ends
        h.AdvanceTo(119);
        Assert.Equal(2, s.Generated);
        Assert.Equal(0, late.Generated);

        h.RunUntilDone([s, late]);
        Assert.Equal(120, late.AdmittedAtMs, Exact);
        Assert.Equal(160, s.FinishedAtMs, Exact);
        Assert.Equal(1, h.Engine.GetStats().Stalls);
    }

    [Fact]
    public void PassingCollapseQueueFailsEverythingThenRefusesForCollapseMs()
    {
        using var h = new EngineHarness(new SimOptions { Slots = 1, Queue = 5, CollapseQueue = 2, CollapseMs = 100, PrefillMs = 1, PerTokenMs = 1 });
        var a = h.Admit(0, 1000);
        var b = h.Admit(0, 10);
        var c = h.Admit(0, 10);
        h.AdvanceTo(5);
        Assert.Equal(AdmissionResult.Collapsed, h.TryAdmit(0, 10)); // queue would be 3 > 2

        Assert.All([a, b, c], s => Assert.Equal(SequenceOutcome.Failed, EngineHarness.OutcomeOf(s)));
        var stats = h.Engine.GetStats();
        Assert.Equal((4L, 1L, 0, 0), (stats.Failed, stats.Collapses, stats.Inflight, stats.QueueDepth));
        Assert.True(h.Engine.IsCollapsed);

        h.AdvanceTo(104);
        Assert.Equal(AdmissionResult.Collapsed, h.TryAdmit(0, 10));
        h.AdvanceTo(105);
        Assert.False(h.Engine.IsCollapsed);
        var after = h.Admit(0, 3);
        h.RunUntilDone([after]);
        Assert.Equal(SequenceOutcome.Completed, EngineHarness.OutcomeOf(after));
        Sims.AssertBalanced(h.Engine.GetStats());
    }

    [Fact]
    public void ShutdownEndsEverySequenceAndRefusesNewOnes()
    {
        using var h = new EngineHarness(new SimOptions { Slots = 1, Queue = 1 });
        var a = h.Admit(0, 10, streaming: true);
        var b = h.Admit(0, 10);
        h.Engine.Shutdown();
        Assert.Equal(SequenceOutcome.Shutdown, EngineHarness.OutcomeOf(a));
        Assert.Equal(SequenceOutcome.Shutdown, EngineHarness.OutcomeOf(b));
        Assert.True(a.Tokens.Completion.IsCompleted);
        Assert.Equal(AdmissionResult.ShuttingDown, h.TryAdmit(0, 1));
        Sims.AssertBalanced(h.Engine.GetStats());
    }
}

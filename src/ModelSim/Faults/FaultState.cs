namespace ModelSim.Faults;

/// <summary>
/// The simulator's two faults, as state the engine consults under its lock:
/// <list type="bullet">
/// <item><b>Stall</b> (<c>POST /sim/stall?ms=N</c>): the GPU stops for N ms, as in a long GC pause or a stuck kernel.
/// Nothing is generated and no prefill progresses; queued and running requests just wait, then carry on where they were.</item>
/// <item><b>Collapse</b> (<c>Sim:CollapseQueue</c>, <c>Sim:CollapseMs</c>): when the queue would pass <c>CollapseQueue</c> the
/// server falls over like an OOM-killed one: every running and queued request fails, and for <c>CollapseMs</c> every
/// request is answered 500. Afterwards it serves again, empty.</item>
/// </list>
/// </summary>
/// <remarks>Not thread-safe: the engine calls it under its lock. Times are engine milliseconds.</remarks>
internal sealed class FaultState(int collapseQueue, double collapseMs)
{
    /// <summary>Engine time until which generation is frozen; in the past when not stalled.</summary>
    public double StallUntilMs { get; private set; } = double.NegativeInfinity;

    /// <summary>Engine time until which every request is answered 500; in the past when not collapsed.</summary>
    public double CollapsedUntilMs { get; private set; } = double.NegativeInfinity;

    /// <summary>True while a stall is in effect at <paramref name="nowMs"/>.</summary>
    public bool IsStalled(double nowMs) => nowMs < StallUntilMs;

    /// <summary>True while a collapse is in effect at <paramref name="nowMs"/>.</summary>
    public bool IsCollapsed(double nowMs) => nowMs < CollapsedUntilMs;

    /// <summary>True when a queue of <paramref name="queueDepthAfter"/> requests passes <c>Sim:CollapseQueue</c> (never when it is 0).</summary>
    public bool WouldCollapse(int queueDepthAfter) => collapseQueue > 0 && queueDepthAfter > collapseQueue;

    /// <summary>Starts a collapse at <paramref name="nowMs"/> lasting <paramref name="durationMs"/> (default <c>Sim:CollapseMs</c>).</summary>
    public void BeginCollapse(double nowMs, double? durationMs = null) =>
        CollapsedUntilMs = Math.Max(CollapsedUntilMs, nowMs + (durationMs ?? collapseMs));

    /// <summary>
    /// Freezes generation from <paramref name="nowMs"/> for <paramref name="durationMs"/>. Overlapping stalls merge: the
    /// freeze lasts until the later end.
    /// </summary>
    /// <returns>How far (ms) every running sequence's schedule must be pushed back: the part of the new freeze not already frozen.</returns>
    public double BeginStall(double nowMs, double durationMs)
    {
        var frozenFrom = Math.Max(nowMs, StallUntilMs);
        var until = Math.Max(StallUntilMs, nowMs + durationMs);
        StallUntilMs = until;
        return Math.Max(0, until - frozenFrom);
    }
}
